"""python -m src.evaluate: its numbers against direct computations, its outputs, its refusals."""

import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.classification import MulticlassCalibrationError

from src.evaluate import main as evaluate_main
from src.evaluate import reliability
from tests.conftest import run_main

EVAL_FILES = {
    "metrics.yaml", "test_confusion_matrix.png", "test_reliability.png",
    "test_misclassified.png",
}  # fmt: skip


def run_evaluate(*args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m src.evaluate ARGS`` in this process."""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["src.evaluate", *args])
    try:
        evaluate_main()
    finally:
        GlobalHydra.instance().clear()


def trained_run(tmp_path: Path, monkeypatch, name: str, *overrides: str) -> Path:
    run_dir = tmp_path / name
    args = ["data=fake", "trainer.max_steps=30", "trainer.val_check_interval=10",
            "trainer.accelerator=cpu",
            f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
            *overrides]  # fmt: skip
    run_main(*args, monkeypatch=monkeypatch)
    return run_dir


def predictions(run_dir: Path, ckpt: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's model with the checkpoint's weights on a split: class probabilities and labels,
    computed here without src.evaluate."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    net = instantiate(cfg.model)
    classifier = instantiate(cfg.classifier, net=net, optimizer=instantiate(cfg.optimizer))
    state = torch.load(ckpt, weights_only=True)
    classifier.load_state_dict(state["state_dict"])
    classifier.on_load_checkpoint(state)
    dm = instantiate(cfg.data)
    dm.setup("test")
    x, y = dm.splits[split]
    with torch.no_grad():
        out = classifier.eval()(x)
    return out.float().softmax(dim=1), y  # every classifier returns logits


def ece_by_hand(probs: torch.Tensor, y: torch.Tensor, bins: int) -> float:
    """Bins [k/bins, (k+1)/bins), and a bin of its own for confidence 1.0, as torchmetrics."""
    confidence, predicted = probs.max(dim=1)
    total = 0.0
    ranges = [(k / bins, (k + 1) / bins) for k in range(bins)] + [(1.0, 2.0)]
    for lower, upper in ranges:
        in_bin = (confidence >= lower) & (confidence < upper)
        if in_bin.any():
            gap = (predicted[in_bin] == y[in_bin]).float().mean() - confidence[in_bin].mean()
            total += in_bin.sum().item() / len(y) * abs(gap.item())
    return total


@pytest.mark.parametrize("bins", [5, 15])
def test_reliability_bins_as_torchmetrics_ece(bins):
    # Confidence exactly 1.0 (right) beside 0.96 (wrong), and confidences on bin edges: torchmetrics
    # gives 1.0 a bin of its own, where a last bin [1 - 1/bins, 1] would average the two.
    confidences = [1.0, 1.0, 0.96, 0.96, 0.4, 0.6, 0.2, 0.8, 0.55, 0.35]
    labels = [0, 0, 1, 1, 0, 2, 0, 1, 0, 2]
    probs = torch.tensor([[c, (1 - c) / 2, (1 - c) / 2] for c in confidences])
    y = torch.tensor(labels)
    mean_conf, accuracy, count = reliability(probs, y, bins)
    assert len(count) == bins + 1 and count[-1] == 2 and accuracy[-1] == 1 == mean_conf[-1]
    assert count.sum() == len(y)
    ece = float(((accuracy - mean_conf).abs() * count).sum() / len(y))
    expected = MulticlassCalibrationError(3, n_bins=bins, norm="l1")(probs, y)
    assert ece == pytest.approx(float(expected), abs=1e-6)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("mlp")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_dir = trained_run(tmp_path, monkeypatch, "run", "model.init=torch")
        run_evaluate(f"run={run_dir}", monkeypatch=monkeypatch)
    return run_dir


@pytest.mark.slow
def test_metrics_match_a_direct_computation(mlp_run):
    results = OmegaConf.to_container(OmegaConf.load(mlp_run / "eval" / "metrics.yaml"))
    record = OmegaConf.load(mlp_run / "run.yaml")
    ckpt = mlp_run / results["checkpoint"]  # relative to the run folder: it may move
    assert ckpt.name.startswith("best-step")  # the run's selected checkpoint
    assert results["checkpoint"] == record.tested_checkpoint
    assert {"val", "test"} <= results.keys()
    assert results["test"]["acc"] == pytest.approx(record.metrics["final_test/acc"], abs=1e-6)
    assert results["test"]["loss"] == pytest.approx(record.metrics["final_test/loss"], rel=1e-4)
    assert results["val"]["acc"] == pytest.approx(record.metrics["best_val/acc"], abs=1e-6)
    for split in ("val", "test"):
        metrics = results[split]
        probs, y = predictions(mlp_run, ckpt, split)
        predicted = probs.argmax(dim=1)
        matrix = torch.tensor(metrics["confusion_matrix"])
        assert matrix.sum() == len(y) == metrics["n"]
        assert matrix.trace().item() / len(y) == pytest.approx(metrics["acc"])
        assert metrics["acc"] == pytest.approx((predicted == y).float().mean().item())
        for c, acc in enumerate(metrics["per_class_acc"]):
            pairs = zip(predicted.tolist(), y.tolist(), strict=True)
            hits = sum(1 for p, t in pairs if t == c and p == c)
            assert acc == pytest.approx(hits / y.tolist().count(c))
        assert 0 < metrics["ece"] == pytest.approx(ece_by_hand(probs, y, 15), abs=1e-5)


def test_outputs_land_in_the_run_folder_and_its_tensorboard_log(mlp_run):
    assert EVAL_FILES | {"val_confusion_matrix.png"} <= {
        p.name for p in (mlp_run / "eval").iterdir()
    }
    events = EventAccumulator(str(mlp_run), size_guidance={"images": 0})
    events.Reload()
    assert {"eval/test/acc", "eval/val/ece", "eval/test/acc_3"} <= set(events.Tags()["scalars"])
    assert {"eval/test/confusion_matrix", "eval/test/reliability"} <= set(events.Tags()["images"])


@pytest.mark.slow
def test_the_numpy_mlp_without_a_validation_split(tmp_path, monkeypatch):
    run_dir = trained_run(tmp_path, monkeypatch, "numpy", "model=mlp_numpy", "data.val_size=0")
    run_evaluate(f"run={run_dir}", monkeypatch=monkeypatch)
    results = OmegaConf.load(run_dir / "eval" / "metrics.yaml")
    record = OmegaConf.load(run_dir / "run.yaml")
    assert results.checkpoint == record.tested_checkpoint == "checkpoints/last.ckpt"
    assert "val" not in results
    assert {p.name for p in (run_dir / "eval").iterdir()} >= EVAL_FILES
    # Its logits are the log of its probabilities: the loss is the run's own.
    assert results.test.acc == pytest.approx(record.metrics["final_test/acc"], abs=1e-6)
    assert results.test.loss == pytest.approx(record.metrics["final_test/loss"], rel=1e-4)
    probs, y = predictions(run_dir, run_dir / results.checkpoint, "test")
    assert results.test.ece == pytest.approx(ece_by_hand(probs, y, 15), abs=1e-5)


def test_a_missing_or_foreign_checkpoint_is_one_sentence(mlp_run, tmp_path, monkeypatch, capsys):
    torch.save({"state_dict": {}, "tags": {"model": "src.models.ConvNet"}}, tmp_path / "c.ckpt")
    cases = [
        (f"ckpt_path={tmp_path / 'none.ckpt'}", "none.ckpt: no such checkpoint"),
        (f"ckpt_path={tmp_path / 'c.ckpt'}", "ConvNet model, but this run trains"),
    ]
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    cases.append((f"ckpt_path={tmp_path / 'junk.ckpt'}", "is not a readable checkpoint"))
    for arg, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run_evaluate(f"run={mlp_run}", arg, monkeypatch=monkeypatch)
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and message in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        run_evaluate(f"run={tmp_path / 'nowhere'}", monkeypatch=monkeypatch)
    assert exit_info.value.code == 1 and "no such folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_evaluate(f"run={empty}", monkeypatch=monkeypatch)
    assert exit_info.value.code == 1 and "no run there" in capsys.readouterr().err
    assert not any(empty.iterdir())  # refused before Hydra writes: no eval/ folder in it


def test_only_the_evaluation_entry_point_imports_matplotlib():
    # (pytorch_lightning imports it anyway; the training code itself does not.)
    src = Path(__file__).resolve().parents[1] / "src"
    users = {p.name for p in src.rglob("*.py") if "import matplotlib" in p.read_text()}
    assert users == {"evaluate.py"}


def test_a_run_whose_config_this_code_cannot_build_is_one_sentence(
    mlp_run, tmp_path, monkeypatch, capsys
):
    """A run of other code whose config names a model option this code does not know (a missing
    key takes the model's default, an unknown one cannot)."""
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(mlp_run, old)
    config = old / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("  neg_slope: ", "  negative_slope: ", 1))
    with pytest.raises(SystemExit) as exit_info:
        run_evaluate(f"run={old}", monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert "config does not build with this checkout (model: " in err
    assert "negative_slope" in err and "the commit its run.yaml names" in err


def test_the_figures_redraw_from_the_record_alone(mlp_run, tmp_path):
    """``scripts.plot_evaluation`` on a copy without checkpoints (as results/ keeps runs)."""
    import shutil

    from scripts.plot_evaluation import main as plot_evaluation

    record = tmp_path / "record"
    shutil.copytree(mlp_run, record, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    assert plot_evaluation([str(record), "--out", str(tmp_path / "figures")]) == 0
    drawn = {p.name for p in (tmp_path / "figures").iterdir()}
    assert drawn == {
        f"{s}_{f}.png" for s in ("val", "test") for f in ("confusion_matrix", "reliability")
    }
    test = OmegaConf.load(record / "eval" / "metrics.yaml").test
    assert sum(test.reliability.count) == test.n and len(test.reliability.count) == 16  # 15 + 1.0
