"""The diagnostics callback: its numbers equal direct computations, and land under the tags."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from src.lit import Classifier, NumpyClassifier
from src.lit.diagnostics import Diagnostics, activation_stats, tag
from src.numpy_nn import SGD as NumpySGD
from src.numpy_nn import NumpyMLP
from tests.conftest import FAST, run_main

LR = 0.1


def read_events(folder: Path) -> EventAccumulator:
    """Every scalar and histogram of the event files under ``folder``."""
    files = sorted(folder.rglob("events.out.tfevents*"))
    assert files, f"no event file under {folder}"
    merged = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0, "histograms": 0})
    merged.Reload()
    return merged


def diagnostic_tags(events: EventAccumulator) -> set[str]:
    tags = events.Tags()
    return {t for t in tags["scalars"] + tags["histograms"] if t.startswith("diagnostics/")}


def test_activation_stats_of_known_values():
    out = torch.tensor([[1.0, -1.0, 0.0, 3.0], [2.0, -3.0, 0.0, -1.0]])
    mean, std, dead = activation_stats(out).tolist()
    assert dead == pytest.approx(0.5)  # units 1 and 2 are never positive
    assert mean == pytest.approx(out.mean().item()) and std == pytest.approx(
        out.std(correction=0).item()
    )
    # Images: a unit is a channel, dead if positive at no sample and no pixel.
    images = torch.full((2, 3, 4, 4), -1.0)
    images[1, 2, 3, 0] = 0.5
    assert activation_stats(images)[2].item() == pytest.approx(2 / 3)


def tiny_weights() -> list[tuple[np.ndarray, np.ndarray]]:
    """2 -> 3 -> 2, with hidden unit 2 dead on positive inputs (all its weights negative)."""
    w0 = np.array([[1.0, 0.5], [0.3, 0.8], [-1.0, -2.0]])
    b0 = np.array([0.1, 0.0, -0.5])
    w1 = np.array([[0.4, -0.6, 0.9], [-0.2, 0.7, 0.3]])
    b1 = np.array([0.05, -0.05])
    return [(w0, b0), (w1, b1)]


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1.0, 2.0], [0.5, 0.1], [2.0, 1.0], [0.2, 0.3]])
    return x, torch.tensor([0, 1, 1, 0])


def torch_tiny_mlp(neg_slope: float) -> nn.Sequential:
    (w0, b0), (w1, b1) = tiny_weights()
    net = nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(neg_slope), nn.Linear(3, 2))
    with torch.no_grad():
        for linear, (w, b) in zip((net[0], net[2]), tiny_weights(), strict=True):
            linear.weight.copy_(torch.tensor(w))
            linear.bias.copy_(torch.tensor(b))
    return net


def numpy_tiny_mlp(neg_slope: float) -> NumpyMLP:
    net = NumpyMLP(n_inputs=2, n_classes=2, neg_slope=neg_slope, dtype="float32", hidden_units=[3])
    net.load_state_dict(
        {
            f"layers.{i}.{k}": v
            for i, (w, b) in zip((0, 2), tiny_weights(), strict=True)
            for k, v in (("weight", w), ("bias", b))
        }
    )
    return net


def fit_one_step(classifier: pl.LightningModule, folder: Path, steps: int = 1, every: int = 1):
    x, y = tiny_batch()
    trainer = pl.Trainer(
        max_steps=steps,
        log_every_n_steps=every,
        accelerator="cpu",
        logger=TensorBoardLogger(str(folder), name="", version=""),
        callbacks=[Diagnostics(histogram_every=1)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(classifier, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=len(y)))
    return trainer


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_numbers_equal_direct_computations(tmp_path, kind):
    neg_slope = 0.0
    if kind == "torch":
        net = torch_tiny_mlp(neg_slope)
        classifier = Classifier(net, partial(torch.optim.SGD, lr=LR), num_classes=2)
    else:
        net = numpy_tiny_mlp(neg_slope)
        classifier = NumpyClassifier(net, partial(NumpySGD, lr=LR), num_classes=2)
    fit_one_step(classifier, tmp_path)

    # The same step computed directly, with autograd and a hand-made SGD update.
    reference = torch_tiny_mlp(neg_slope)
    x, y = tiny_batch()
    hidden = reference[1](reference[0](x))
    F.cross_entropy(reference[2](hidden), y).backward()
    events = read_events(tmp_path)

    def logged(stat: str, layer: int) -> float:
        (scalar,) = events.Scalars(tag(stat, layer))
        assert scalar.step == 1
        return scalar.value

    for i, linear in enumerate((reference[0], reference[2])):
        grad, weight = linear.weight.grad, linear.weight.detach()
        grad_norm = torch.linalg.vector_norm(grad).item()
        update = weight - LR * grad  # one SGD step
        ratio = (
            torch.linalg.vector_norm(update - weight) / torch.linalg.vector_norm(weight)
        ).item()
        assert logged("grad_norm", i) == pytest.approx(grad_norm, rel=1e-5)
        assert logged("weight_norm", i) == pytest.approx(torch.linalg.vector_norm(weight).item())
        assert logged("update_ratio", i) == pytest.approx(ratio, rel=1e-4)
    assert logged("dead_fraction", 0) == pytest.approx(1 / 3)  # unit 2, by construction
    assert logged("activation_mean", 0) == pytest.approx(hidden.mean().item(), rel=1e-5)
    assert logged("activation_std", 0) == pytest.approx(hidden.std(correction=0).item(), rel=1e-5)
    histograms = events.Tags()["histograms"]
    assert {tag(h, 0) for h in ("weights", "grads", "activations")} <= set(histograms)


def test_only_logging_steps_do_work(tmp_path):
    net = torch_tiny_mlp(0.02)
    classifier = Classifier(net, partial(torch.optim.SGD, lr=LR), num_classes=2)
    calls = []
    net[1].register_forward_hook(lambda *_: calls.append(len(net[1]._forward_hooks)))
    fit_one_step(classifier, tmp_path, steps=5, every=2)
    # The callback's hook is there on logging steps 2 and 4 only, and removed afterwards.
    assert calls == [1, 2, 1, 2, 1]
    assert len(net[1]._forward_hooks) == 1
    steps = [s.step for s in read_events(tmp_path).Scalars(tag("grad_norm", 0))]
    assert steps == [2, 4]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "mlp_numpy", "convnet"])
def test_tags_in_the_event_file(tmp_path, monkeypatch, model):
    extra = {"mlp": ["model.hidden_units=[8,6]"], "mlp_numpy": [], "convnet": ["data.batch_size=4"]}
    run = ["callbacks=diagnostics", f"model={model}", f"hydra.run.dir={tmp_path}", *extra[model]]
    run_main(*FAST, *run, monkeypatch=monkeypatch)
    tags = diagnostic_tags(read_events(tmp_path))
    n_weight, n_act = {"mlp": (3, 2), "mlp_numpy": (2, 1), "convnet": (9, 8)}[model]
    expected = {
        tag(s, i)
        for i in range(n_weight)
        for s in ("grad_norm", "weight_norm", "update_ratio", "weights", "grads")
    }
    expected |= {
        tag(s, i)
        for i in range(n_act)
        for s in ("activation_mean", "activation_std", "dead_fraction", "activations")
    }
    assert tags == expected


@pytest.mark.slow
def test_both_mlps_log_the_same_tags(tmp_path, monkeypatch):
    folders = {}
    for model in ("mlp", "mlp_numpy"):
        folders[model] = tmp_path / model
        run_main(
            *FAST,
            "callbacks=diagnostics",
            f"model={model}",
            f"hydra.run.dir={folders[model]}",
            monkeypatch=monkeypatch,
        )
    torch_tags, numpy_tags = (diagnostic_tags(read_events(f)) for f in folders.values())
    assert torch_tags == numpy_tags and tag("dead_fraction", 0) in torch_tags


def test_off_by_default(tmp_path, monkeypatch):
    run_main(*FAST, f"hydra.run.dir={tmp_path}", monkeypatch=monkeypatch)
    events = read_events(tmp_path)
    assert "train/loss" in events.Tags()["scalars"]
    assert diagnostic_tags(events) == set()


def test_plot_script_reads_the_tags(tmp_path):
    from scripts import plot_diagnostics as plot

    net = torch_tiny_mlp(0.0)
    fit_one_step(Classifier(net, partial(torch.optim.SGD, lr=LR), num_classes=2), tmp_path / "run")
    steps, values = plot.read_layers(tmp_path / "run", "dead_fraction")[0]
    assert list(steps) == [1] and values[0] == pytest.approx(1 / 3)
    out = tmp_path / "dead.png"
    plot.main(["--stat", "dead_fraction", "--run", f"a={tmp_path / 'run'}", "--out", str(out)])
    assert out.stat().st_size > 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no diagnostics/grad_norm"):
        plot.main(["--stat", "grad_norm", "--run", f"a={tmp_path}/empty", "--out", str(out)])
    with pytest.raises(SystemExit, match="no such folder"):
        plot.main(["--stat", "grad_norm", "--run", f"a={tmp_path}/missing", "--out", str(out)])
