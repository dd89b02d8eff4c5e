"""``python -m scripts.bench diagnostics``: what the diagnostics callback costs, step time with
``callbacks=diagnostics`` and without.

Each model trains with its own recipe through the project's run (``Benchmark.fit``), in three
variants run in turn (rotated each repeat): ``off`` (the default callbacks), ``on``
(``callbacks=diagnostics``: scalars at every logging step, histograms every 20th logging step, the
defaults) and ``on, histograms always`` (``histogram_every=1``). The timed window is ``--steps``
steps after ``--warmup`` warm-up steps (``scripts.bench.timing.StepTimer``), so it holds
``steps / log_every_n_steps`` logging steps. Reported: median wall ms and process CPU ms per step,
the overhead against ``off``, and the CPU ms per step spent inside the callback's own hooks (and
its share of the ``off`` step's CPU time). On a machine shared with other work the step times are
noisy (CPU time is the steadier); the hooks' own time is the clearest sign.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from scripts.bench.settings import MODELS, Benchmark, log, with_trainer
from scripts.bench.timing import StepTimer
from src.lit.diagnostics import Diagnostics

VARIANTS = {
    "off": [],
    "on": ["callbacks=diagnostics"],
    "on, histograms always": ["callbacks=diagnostics", "callbacks.diagnostics.histogram_every=1"],
}
#: No checkpoints and no progress bar: they would only add noise to the steps compared.
QUIET_CALLBACKS = ["callbacks.model_checkpoint=null", "callbacks.progress_bar=null"]
HOOKS = ("on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end")


class HookTimer(pl.Callback):
    """Adds the process's CPU seconds spent inside the ``Diagnostics`` callback's hooks in steps
    ``first .. last`` (the event writer thread's work included): the callback's own cost, which a
    busy machine's time-sharing does not inflate as it does wall time."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.seconds = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, Diagnostics):
                for name in HOOKS:
                    setattr(callback, name, self._timed(getattr(callback, name)))

    def _timed(self, hook):
        def run(trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
            start = time.process_time()
            hook(trainer, *args, **kwargs)
            if self.first <= trainer.global_step < self.last:
                self.seconds += time.process_time() - start

        return run


def step_ms(bench: Benchmark, model: str, variant: str, args, folder: str) -> tuple[float, ...]:
    """Wall and CPU ms per training step of one fit, and the CPU ms per step spent inside the
    diagnostics' hooks (0 without them)."""
    cfg = bench.compose(model, [*VARIANTS[variant], *QUIET_CALLBACKS], folder)
    steps = args.steps
    cfg = with_trainer(cfg, max_steps=args.warmup + steps + 1, val_check_interval=10**9)
    timer = StepTimer(args.warmup, steps, bench.device)
    hooks = HookTimer(args.warmup, args.warmup + steps)
    bench.fit(cfg, [timer, hooks])
    return timer.ms_per_step, timer.cpu_ms_per_step, hooks.seconds / steps * 1e3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="mlp,mlp_deep,mlp_numpy", help=f"of {','.join(MODELS)}")
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3)


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        return "--steps and --repeats must be positive, --warmup not negative"
    return None


def run(args: argparse.Namespace) -> str:
    """Every model in every variant, ``args.repeats`` times; the table of their medians."""
    lines = [
        f"{args.steps} timed steps, {args.repeats} repeats, on {args.device.type}",
        "",
        "| model | variant | wall ms | CPU ms | wall +% | CPU +% | hooks' CPU ms | of the step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="bench-diagnostics-") as tmp:
        bench = Benchmark(args, Path(tmp))
        for model in args.models:
            times: dict[str, list[tuple[float, ...]]] = {v: [] for v in VARIANTS}
            for r in range(args.repeats):
                for variant in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
                    log(f"round {r + 1}: {model}, diagnostics {variant}")
                    folder = f"{model}-{r}-{names.index(variant)}"
                    times[variant].append(step_ms(bench, model, variant, args, folder))
            base_wall, base_cpu = (statistics.median(t[i] for t in times["off"]) for i in (0, 1))
            for variant, runs in times.items():
                wall, cpu, hooks = (statistics.median(t[i] for t in runs) for i in (0, 1, 2))
                lines.append(
                    f"| {model} | {variant} | {wall:.2f} | {cpu:.2f} "
                    f"| {100 * (wall / base_wall - 1):+.1f} | {100 * (cpu / base_cpu - 1):+.1f} "
                    f"| {hooks:.3f} | {100 * hooks / base_cpu:.1f}% |"
                )
    return "\n".join(lines)
