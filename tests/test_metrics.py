"""One list of metrics (``src.lit.classifier.METRICS``): a metric added there is in every curve,
in run.yaml's final test and in ``src.evaluate``'s metrics, for every classifier."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torchmetrics import MeanMetric

from src.lit.classifier import METRICS, eval_metrics
from tests.conftest import FAST, run_main
from tests.test_evaluate import run_evaluate


class MeanConfidence(MeanMetric):
    """A metric the project does not have: the mean top-class probability."""

    def update(self, logits: Tensor, target: Tensor) -> None:
        super().update(logits.float().softmax(dim=1).amax(dim=1))


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_the_loss_metric_is_the_mean_cross_entropy():
    logits, y = torch.randn(7, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    metrics = eval_metrics(4)
    metrics.update(logits[:3], y[:3])
    metrics.update(logits[3:], y[3:])  # batches of different sizes weigh by their samples
    values = metrics.compute()
    expected = torch.nn.functional.cross_entropy(logits, y)
    assert values["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert values["acc"].item() == pytest.approx((logits.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize("model", ["mlp", "mlp_numpy"])
def test_a_metric_added_to_the_list_appears_everywhere(tmp_path, monkeypatch, model):
    monkeypatch.setitem(METRICS, "confidence", lambda num_classes: MeanConfidence())
    run_dir = tmp_path / "run"
    run_main(*FAST, f"model={model}", f"paths.data_dir={tmp_path / 'data'}",
             f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)  # fmt: skip
    tags = scalar_tags(run_dir)
    assert {"train/confidence", "val/confidence", "test/confidence"} <= tags
    assert {"train/acc", "train/loss", "val/acc", "val/loss", "test/acc", "test/loss"} <= tags

    final = OmegaConf.load(run_dir / "run.yaml").metrics
    assert 0 < final["final_test/confidence"] <= 1

    run_evaluate(f"run={run_dir}", monkeypatch=monkeypatch)
    evaluated = OmegaConf.load(run_dir / "eval" / "metrics.yaml")
    # The same checkpoint on the same test set: the same value as the final test.
    assert evaluated.test.confidence == pytest.approx(final["final_test/confidence"], rel=1e-5)
    assert 0 < evaluated.val.confidence <= 1
    assert {"eval/test/confidence", "eval/val/confidence"} <= scalar_tags(run_dir)
