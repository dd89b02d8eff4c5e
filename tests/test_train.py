"""End to end: ``python -m src.train`` on fake data, and what a run leaves behind."""

import logging
import logging.handlers
from pathlib import Path

import pytest
import torch
from tbparse import SummaryReader

from src.scalars import read_scalars
from src.train import train
from tests.conftest import compose_cfg, run_cli, run_main

CURVES = {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"}


scalars = read_scalars  # {tag: {step: value}}


def only(paths) -> Path:
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


@pytest.mark.slow
def test_cli_trains_the_default_mlp_and_saves_the_run(fast_overrides, tmp_path):
    result = run_cli(*fast_overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = only((tmp_path / "outputs" / "runs").iterdir())
    assert run_dir.name.endswith("_mlp")
    assert {p.name for p in (run_dir / ".hydra").iterdir()} >= {"config.yaml", "overrides.yaml"}
    ckpts = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(name.startswith("best-step") for name in ckpts)

    curves = scalars(run_dir)
    assert curves.keys() >= CURVES
    assert sorted(curves["test/acc"]) == [3, 6]  # evaluated after 3 and 6 steps
    assert set(curves["val/acc"]) == {3, 6}
    assert {"final_test/acc", "final_test/loss", "best_val/acc"} <= curves.keys()
    assert f"run saved to {run_dir}" in result.stderr + result.stdout

    hparams = SummaryReader(str(run_dir)).hparams
    assert {"model", "optimizer/lr", "model/hidden_units"} <= set(hparams.tag)


def test_the_final_test_uses_the_best_validation_checkpoint(fast_overrides, tmp_path):
    cfg = compose_cfg(*fast_overrides, output_dir=tmp_path / "run")
    metrics = train(cfg)
    curves = scalars(tmp_path / "run")
    best_step = max(curves["val/acc"], key=lambda step: (curves["val/acc"][step], -step))
    assert metrics["best_val/acc"] == pytest.approx(curves["val/acc"][best_step])
    assert metrics["final_test/acc"] == pytest.approx(curves["test/acc"][best_step])


@pytest.mark.slow
def test_convnet_trains_a_few_steps(fast_overrides, tmp_path):
    cfg = compose_cfg(
        *fast_overrides,
        "model=convnet",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "data.num_train=128",
        "data.val_size=32",
        "data.num_test=32",
        output_dir=tmp_path / "run",
    )
    metrics = train(cfg)
    assert 0 <= metrics["final_test/acc"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_without_a_validation_split_the_last_checkpoint_is_tested(fast_overrides, tmp_path):
    cfg = compose_cfg(*fast_overrides, "data.val_size=0", output_dir=tmp_path / "run")
    metrics = train(cfg)
    curves = scalars(tmp_path / "run")
    assert "val/acc" not in curves and "best_val/acc" not in metrics
    assert metrics["final_test/acc"] == pytest.approx(curves["test/acc"][6])


@pytest.mark.slow
def test_same_seed_same_metrics(fast_overrides, tmp_path):
    runs = [train(compose_cfg(*fast_overrides, output_dir=tmp_path / str(i))) for i in range(2)]
    assert runs[0] == runs[1]
    other = train(compose_cfg(*fast_overrides, "seed=7", output_dir=tmp_path / "other"))
    assert other != runs[0]


def test_learns_well_above_chance(fast_overrides, tmp_path):
    cfg = compose_cfg(*fast_overrides, "trainer.max_steps=40", "trainer.val_check_interval=20",
                      "data.batch_size=50", output_dir=tmp_path / "run")  # fmt: skip
    assert train(cfg)["final_test/acc"] > 0.4  # ten classes: chance is 0.1


@pytest.mark.slow
def test_multirun_puts_each_job_in_one_sweep_folder(fast_overrides, tmp_path, monkeypatch):
    run_main("-m", *fast_overrides, "optimizer.lr=1e-3,1e-4", monkeypatch=monkeypatch)
    sweep = only((tmp_path / "outputs" / "sweeps").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = [SummaryReader(str(job)).hparams.set_index("tag").value["optimizer/lr"] for job in jobs]
    assert lrs == [1e-3, 1e-4]
    assert all(scalars(job).keys() >= CURVES for job in jobs)


def test_checkpoint_holds_the_model_weights(fast_overrides, tmp_path):
    train(compose_cfg(*fast_overrides, output_dir=tmp_path / "run"))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 6
    assert state["state_dict"]["net.layers.1.weight"].shape == (100, 3072)


def test_the_final_test_uses_the_selected_checkpoint_not_the_last(fast_overrides, tmp_path):
    # Selecting by the highest validation loss makes the first validation (step 3) the best: the
    # loss falls as the model learns. So the best checkpoint is not the last one (step 6).
    args = [*fast_overrides, "monitor=val/loss", "monitor_mode=max"]
    metrics = train(compose_cfg(*args, output_dir=tmp_path / "run"))
    curves = scalars(tmp_path / "run")
    assert curves["val/loss"][3] > curves["val/loss"][6]  # the premise: best 3, last 6
    assert metrics["best_val/loss"] == pytest.approx(curves["val/loss"][3])
    assert curves["test/loss"][3] != pytest.approx(curves["test/loss"][6])
    assert metrics["final_test/loss"] == pytest.approx(curves["test/loss"][3])  # not [6]


@pytest.mark.slow
def test_a_resumed_run_draws_the_same_dropout_masks(fast_overrides, tmp_path):
    # Dropout draws from torch's generator: a resumed run continues exactly only if the
    # checkpoint restores it (callbacks.checkpoint_extras).
    args = [*fast_overrides, "model.dropout=0.5", "test=false"]
    train(compose_cfg(*args, output_dir=tmp_path / "whole"))
    train(compose_cfg(*args, "trainer.max_steps=3", output_dir=tmp_path / "first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(compose_cfg(*args, f"ckpt_path={first}", output_dir=tmp_path / "resumed"))

    def weights(run: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / run / "checkpoints" / "last.ckpt")["state_dict"]

    whole, resumed = weights("whole"), weights("resumed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert scalars(tmp_path / "resumed")["train/loss"] == {
        step: loss for step, loss in scalars(tmp_path / "whole")["train/loss"].items() if step > 3
    }


@pytest.mark.slow
def test_a_run_prints_its_choices_one_bar_and_where_it_was_saved(
    fast_overrides, tmp_path, monkeypatch, capfd
):
    run_dir = tmp_path / "run"
    # Lightning's own console handler holds the stream it found at import: read its records.
    lightning = logging.getLogger("pytorch_lightning")
    notices = logging.handlers.BufferingHandler(capacity=1000)
    lightning.addHandler(notices)
    try:
        run_main(*fast_overrides, f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    finally:
        lightning.removeHandler(notices)
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    logged = (run_dir / "train.log").read_text()  # what Hydra's log handlers wrote
    notes = "\n".join(record.getMessage() for record in notices.buffer)
    assert "Loaded model weights" in notes  # Lightning's notices are there ...
    assert "litlogger" not in notes + printed + logged  # ... but not its advertising tip
    assert not any(bar in printed for bar in ("Training:", "Validation", "Testing"))
    assert "train: 100%" in printed
    choices, *_, summary = logged.splitlines()
    assert all(c in choices for c in ("model=mlp", "optimizer=sgd", "data=fake", "overrides:"))
    assert "final_test/acc" in summary and summary.endswith(f"run saved to {run_dir}")
