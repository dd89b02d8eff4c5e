"""Runs survive interruption, resume exactly, refuse bad input clearly, and record themselves."""

import errno
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.checks import CheckpointError, load_checkpoint
from src.lit.checkpoint_io import AtomicCheckpointIO
from src.train import train
from tests.conftest import compose_cfg, run_cli, run_main

# Long enough to cross an epoch boundary (fake data: 16 batches of 50 per epoch).
RUN = ["trainer.max_steps=24", "trainer.val_check_interval=8", "data.batch_size=50"]
KILL = ["+callbacks.killer._target_=tests.killer.KillAtStep", "+callbacks.killer.step=19"]


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars as TensorBoard shows them (events purged by a resumed run are dropped)."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def record(run_dir: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(run_dir / "run.yaml"))


# A warmed-up cosine schedule: a resumed run must restore its state (steps taken, the warm-up's
# factor) from the checkpoint, or its learning rates, and so its results, differ.
@pytest.mark.slow
@pytest.mark.parametrize(
    "model, schedule",
    [("mlp", []), ("mlp_numpy", []), ("mlp", ["scheduler=cosine", "scheduler.warmup_steps=20"])],
)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_result(fast_overrides, tmp_path, model, schedule, signum):
    args = [*fast_overrides, f"model={model}", *RUN, *schedule]
    uninterrupted = train(compose_cfg(*args, output_dir=tmp_path / "whole"))

    run_dir = tmp_path / "killed"
    killed = run_cli(*args, *KILL, f"+callbacks.killer.signum={int(signum)}",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    if signum == signal.SIGKILL:
        assert killed.returncode == -signal.SIGKILL
        assert torch.load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 16
    else:  # SIGTERM: the step finishes, a checkpoint is saved, the exit says how to resume
        assert killed.returncode == 130, killed.stderr
        assert f"resume with: python -m src.train resume={run_dir}" in killed.stderr
        assert torch.load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 20
        assert record(run_dir)["status"] == "interrupted"

    resumed = run_cli(f"resume={run_dir}", "trusted_targets=[tests]", cwd=tmp_path)  # the killer
    assert resumed.returncode == 0, resumed.stderr
    assert record(run_dir)["status"] == "completed"
    assert record(run_dir)["metrics"] == uninterrupted  # to the last digit

    # The curves continue without duplicated or missing steps, and match the uninterrupted run.
    whole, continued = curves(tmp_path / "whole"), curves(run_dir)
    assert [s for s, _ in continued["train/loss"]] == list(range(1, 25))
    assert continued["train/loss"] == whole["train/loss"]
    assert continued["test/acc"] == whole["test/acc"]
    if schedule:
        # The rate of update k+1 is logged at step k: the checkpoint's step is logged again.
        assert dict(continued["lr-SGD"]) == dict(whole["lr-SGD"])


@pytest.mark.slow
def test_resume_refuses_another_model_and_missing_runs(
    fast_overrides, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    train(compose_cfg(*fast_overrides, output_dir=run_dir))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(compose_cfg(*fast_overrides)))
    for args, message in [
        ([f"resume={run_dir}", "model=convnet"], "would make another run"),
        ([f"resume={tmp_path / 'nowhere'}"], "no run to resume there"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            run_main(*args, f"paths.output_root={tmp_path}", monkeypatch=monkeypatch)
        assert exit_.value.code == 1
        assert message in capsys.readouterr().err


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def disk_full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2}, path)
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_disk_is_one_clear_error(fast_overrides, tmp_path, monkeypatch, capsys):
    def disk_full(self, checkpoint, path, storage_options=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", disk_full)
    with pytest.raises(SystemExit) as exit_:
        run_main(*fast_overrides, monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    assert "No space left on device" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    fast_overrides, tmp_path, monkeypatch, capsys
):
    poison = ["+callbacks.poison._target_=tests.killer.PoisonAtStep", "+callbacks.poison.step=4"]
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        run_main(*fast_overrides, *poison, f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    assert "became NaN or infinite at step 5" in capsys.readouterr().err
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert record(run_dir)["status"] == "failed"


# The diverging job overflows: its evaluation meets NaN losses (torchmetrics warns) before its
# training loss turns NaN and stops it.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Encountered `nan` values")
def test_a_failing_sweep_job_is_recorded_and_the_others_run(fast_overrides, tmp_path, monkeypatch):
    # lr=1e6 diverges at once; the job fails, the sweep goes on, and Hydra reports it at the end.
    with pytest.raises(SystemExit):
        run_main("-m", *fast_overrides, "optimizer.lr=1e-3,1e6,1e-4", monkeypatch=monkeypatch)
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    statuses = [record(sweep / str(job))["status"] for job in range(3)]
    assert statuses == ["completed", "failed", "completed"]
    assert "NaN or infinite" in record(sweep / "1")["error"]


@pytest.mark.parametrize(
    "make_checkpoint, message",
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "is not a readable checkpoint"),
        (lambda p: None, "no such checkpoint"),
        (lambda p: torch.save({"global_step": 1, "tags": {"model": "src.models.ConvNet"}}, p),
         "holds a src.models.ConvNet model, but this run trains src.models.MLP"),
    ],
)  # fmt: skip
def test_bad_checkpoints_are_refused(
    fast_overrides, tmp_path, monkeypatch, capsys, make_checkpoint, message
):
    path = tmp_path / "given.ckpt"
    make_checkpoint(path)
    with pytest.raises(SystemExit) as exit_:
        run_main(*fast_overrides, f"ckpt_path={path}", monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    assert message in capsys.readouterr().err


class CreatesAFile:
    """Unpickling this creates ``path``: what a crafted checkpoint could do to a trusting loader."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def crafted_checkpoint(path: Path, created: Path) -> None:
    """A checkpoint that looks like this project's (an MLP's, with a step) and runs code."""
    tags = {"model": "src.models.MLP"}
    torch.save({"global_step": 1, "tags": tags, "state_dict": {}, "x": CreatesAFile(created)}, path)


def test_a_checkpoint_that_would_run_code_is_refused_unrun(
    fast_overrides, tmp_path, monkeypatch, capsys
):
    path, created = tmp_path / "given.ckpt", tmp_path / "created_by_unpickling"
    crafted_checkpoint(path, created)
    with pytest.raises(SystemExit) as exit_:
        run_main(*fast_overrides, f"ckpt_path={path}", monkeypatch=monkeypatch)
    assert exit_.value.code == 1
    assert not created.exists()
    err = capsys.readouterr().err
    assert f"error: ckpt_path={path} is refused: it holds io.open," in err
    assert len(err.strip().splitlines()) == 1


def test_lightnings_own_checkpoint_loading_is_safe(tmp_path):
    """Lightning reads checkpoints (to resume, and the best one for the final test) through the
    run's checkpoint IO: it refuses foreign objects too."""
    path, created = tmp_path / "given.ckpt", tmp_path / "created_by_unpickling"
    crafted_checkpoint(path, created)
    with pytest.raises(CheckpointError, match="is refused"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not created.exists()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "mlp_numpy", "convnet"])
def test_every_models_checkpoints_load_safely(fast_overrides, tmp_path, model):
    small = ["data.num_train=64", "data.val_size=32", "data.num_test=32", "data.batch_size=32"]
    args = [*fast_overrides, f"model={model}", *small, "trainer.max_steps=1"]
    train(compose_cfg(*args, "trainer.val_check_interval=1", output_dir=tmp_path / "run"))
    for path in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        assert load_checkpoint(path)["global_step"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "mlp_numpy"])
def test_a_checkpoint_of_other_layer_sizes_is_refused(
    fast_overrides, tmp_path, monkeypatch, capsys, model
):
    train(compose_cfg(*fast_overrides, f"model={model}", output_dir=tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit):
        run_main(*fast_overrides, f"model={model}", "model.hidden_units=[7]", f"ckpt_path={ckpt}",
                 monkeypatch=monkeypatch)  # fmt: skip
    assert "does not fit this model" in capsys.readouterr().err


@pytest.mark.slow
def test_unwritable_output_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli("data=fake", f"paths.output_root={blocker}", cwd=tmp_path)
    assert result.returncode != 0
    assert "a_file" in result.stderr and "Traceback" not in result.stderr


def test_a_run_records_what_reproduces_it(fast_overrides, tmp_path, monkeypatch):
    run_main(
        *fast_overrides, "seed=3", f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch
    )
    rec = record(tmp_path / "run")
    assert rec["status"] == "completed" and "seed=3" in rec["overrides"]
    assert rec["git"]["commit"] and isinstance(rec["git"]["dirty"], bool)
    assert {"python", "torch", "pytorch-lightning", "hydra-core", "numpy"} <= rec["versions"].keys()
    assert rec["device"].startswith("cpu")
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()
