"""Every option of every config group composes, and bad input is refused before any training."""

import pytest

from tests.conftest import CONF, compose_cfg, run_cli, run_main

GROUPS = ["data", "model", "optimizer", "trainer", "logger", "callbacks"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "group, option", [(g, o) for g in GROUPS for o in options(g)], ids=lambda v: str(v)
)
def test_every_option_composes(group, option):
    cfg = compose_cfg(f"{group}={option}")
    assert cfg[group] is not None


def test_a_model_brings_its_assignment_defaults():
    mlp = compose_cfg("model=mlp")
    assert mlp.optimizer._target_ == "torch.optim.SGD" and mlp.optimizer.lr == 2e-3
    assert (mlp.data.batch_size, mlp.trainer.max_steps, mlp.trainer.val_check_interval) == (
        200, 1500, 100,
    )  # fmt: skip
    assert list(mlp.model.hidden_units) == [100] and mlp.model.neg_slope == 0.02

    convnet = compose_cfg("model=convnet")
    assert convnet.optimizer._target_ == "torch.optim.Adam" and convnet.optimizer.lr == 1e-4
    assert (convnet.data.batch_size, convnet.trainer.max_steps) == (32, 5000)
    assert convnet.trainer.val_check_interval == 500


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "mlp_numpy", "convnet"])
def test_the_class_count_comes_from_the_data_config(model):
    cfg = compose_cfg(f"model={model}", "data=fake", "data.num_classes=4")
    assert cfg.model.n_classes == cfg.classifier.num_classes == 4
    assert compose_cfg(f"model={model}").model.n_classes == 10  # CIFAR-10


@pytest.mark.parametrize("model", ["mlp", "mlp_numpy"])
def test_one_key_sets_the_hidden_sizes_of_both_mlps(model):
    cfg = compose_cfg(f"model={model}", "model.hidden_units=[64,32]")
    assert list(cfg.model.hidden_units) == [64, 32]


def test_command_line_overrides_win_over_model_defaults():
    cfg = compose_cfg("model=convnet", "optimizer=sgd", "optimizer.lr=0.5", "data.batch_size=7")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.5
    assert cfg.data.batch_size == 7


@pytest.mark.parametrize(
    "override, message",
    [
        ("no_such_key=1", "no_such_key"),
        ("model=no_such_model", "no_such_model"),
        ("model.hidden_units=abc", "hidden_units must be a list of positive integers"),
        ("optimizer.lr=-0.1", "optimizer: Invalid learning rate"),
        ("data.batch_size=0", "data.batch_size must be a positive integer"),
        ("data.val_size=1000", "data.val_size must be an integer in"),
        ("data.normalize=zscore", "data.normalize must be one of"),
    ],
)
def test_bad_input_gets_one_clear_error_before_training(
    tmp_path, monkeypatch, capsys, override, message
):
    # data=fake has 1000 training images, so val_size=1000 is as impossible as 50000 on CIFAR-10.
    with pytest.raises(SystemExit) as exit_:
        run_main("data=fake", override, f"paths.output_root={tmp_path}", monkeypatch=monkeypatch)
    assert exit_.value.code not in (0, None)
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("events.out.*"))


@pytest.mark.slow
def test_missing_cifar10_without_network_is_one_sentence(tmp_path):
    # The real command line, once: exit status and stderr as a user sees them.
    result = run_cli(
        f"paths.data_dir={tmp_path / 'nowhere'}",
        "data.url=http://127.0.0.1:9/cifar-10-python.tar.gz",
        f"paths.output_root={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "error: CIFAR-10 not found in" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_synchronised_batch_norm_on_cpu_is_one_sentence(tmp_path, monkeypatch, capsys):
    args = ["data=fake", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    args += ["trainer.sync_batchnorm=true", "model.norm=torch", f"paths.output_root={tmp_path}"]
    with pytest.raises(SystemExit) as exit_:
        run_main(*args, monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    stderr = capsys.readouterr().err
    assert "trainer.sync_batchnorm=true needs CUDA GPUs" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
