"""Evaluation: one pass over the test set, and the share of a run spent in validation."""

import statistics

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from scripts.bench.settings import Benchmark, Setting, log, quiet, with_trainer
from scripts.bench.timing import StepClock, time_block
from src.build import Run
from src.checks import autocast_dtype


def project_test_pass(s: Setting, run: Run) -> float:
    """Seconds of ``trainer.test`` on the test set (on ``s.eval_batches`` batches if set)."""
    run.trainer.limit_test_batches = s.eval_batches or 1.0

    def test() -> None:
        run.trainer.test(run.classifier, datamodule=run.datamodule, verbose=False)

    with quiet():
        return time_block(test, s.device)[0]


def bare_pass(net, x: Tensor, y: Tensor, batch: int, n: int, dtype: torch.dtype | None) -> int:
    """The correct predictions of a bare evaluation of the first ``n`` images in batches of
    ``batch``: a forward pass in ``inference_mode`` (the NumPy net: its own forward), argmax and
    the count, nothing else."""
    if not isinstance(net, torch.nn.Module):
        xn, yn = x.numpy(), y.numpy()
        hits = (
            net.forward(xn[i : i + batch]).argmax(1) == yn[i : i + batch]
            for i in range(0, n, batch)
        )
        return sum(int(h.sum()) for h in hits)
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    autocast = torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)
    with torch.inference_mode(), autocast:
        for i in range(0, n, batch):
            correct += (net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()
    return int(correct)  # waits for the device


def bare_test_pass(s: Setting, run: Run) -> float:
    """Seconds of a bare evaluation of the same network on the same test tensors."""
    x, y = run.datamodule.splits["test"]
    batch = int(s.cfg.data.eval_batch_size)
    n = len(y) if s.eval_batches is None else min(len(y), s.eval_batches * batch)
    s.eval_images, s.test_images = n, len(y)
    dtype = autocast_dtype(s.precision)
    return time_block(lambda: bare_pass(run.classifier.net, x, y, batch, n, dtype), s.device)[0]


def measure_test_passes(settings: list[Setting], runs: dict[str, Run], repeats: int) -> None:
    """Time ``repeats`` test passes of each model's run, through the project and bare."""
    for s in settings:
        for _ in range(repeats):
            log(f"test pass: {s.name}")
            s.project.eval_s.append(project_test_pass(s, runs[s.name]))
            s.bare.eval_s.append(bare_test_pass(s, runs[s.name]))


def validation_share(
    bench: Benchmark,
    name: str,
    test_only: bool = False,
    intervals: int = 3,
    interval: int | None = None,
) -> dict[str, float]:
    """The share of model ``name``'s run that goes into its validation intervals.

    Fits ``intervals`` validation intervals as configured (or every ``interval`` steps),
    every step timed, then times a bare forward pass over the same evaluation splits.
    ``test_only``: no validation split (``data.val_size=0``, the assignment's protocol), run as
    ``src.train`` runs it (no best checkpoint to monitor).
    """
    extra = ["data.val_size=0"] if test_only else []
    cfg = bench.compose(name, extra, f"{name}_eval_share{'_test_only' if test_only else ''}")
    interval = interval or int(cfg.trainer.val_check_interval)
    full_steps = int(cfg.trainer.max_steps)
    cfg = with_trainer(cfg, max_steps=intervals * interval + 1, val_check_interval=interval)
    clock = StepClock(bench.device)
    run = bench.fit(cfg, [clock])
    gaps = np.diff(clock.starts)
    at = [k * interval - 1 for k in range(1, intervals + 1)]  # the gaps holding validation
    median = float(np.median(np.delete(gaps, at)[3:]))  # the first steps warm up
    evals = [float(gaps[i]) - median for i in at]
    validations = [end - start for start, end in clock.validations]
    bare = [bare_forward(run, cfg) for _ in range(3)]
    eval_s = statistics.median(evals)
    n_evals = full_steps // interval
    return {
        "interval": interval,
        "step_s": median,
        "eval_s": eval_s,
        "validation_s": statistics.median(validations) if validations else float("nan"),
        "bare_s": statistics.median(bare),
        "eval_images": sum(len(run.datamodule.splits[k][1]) for k in run.datamodule.eval_splits),
        "full_steps": full_steps,
        "n_evals": n_evals,
        "share": n_evals * eval_s / (n_evals * eval_s + full_steps * median),
    }


def bare_forward(run: Run, cfg: DictConfig) -> float:
    """Seconds of a bare evaluation (``bare_pass``) of every evaluation split."""
    batch, splits = int(cfg.data.eval_batch_size), run.datamodule.splits

    def evaluate() -> None:
        for x, y in (splits[name] for name in run.datamodule.eval_splits):
            bare_pass(run.classifier.net, x, y, batch, len(y), None)

    return time_block(evaluate, run.classifier.device)[0]


def measure_validation_shares(
    bench: Benchmark, interval: int | None = None
) -> list[dict[str, float]]:
    """The default MLP's validation share, with a validation split and without one; validated
    every ``interval`` steps (default: as configured)."""
    shares = []
    for test_only in (False, True):
        log(f"validation share: mlp{' (data.val_size=0)' if test_only else ''}")
        shares.append(validation_share(bench, "mlp", test_only, interval=interval))
    return shares
