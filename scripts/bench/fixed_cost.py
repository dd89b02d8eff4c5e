"""``python -m scripts.bench fixed-cost``: where the framework's fixed cost per training step goes,
a ladder from a bare loop to a run of ``python -m src.train``, one layer at a time.

The model is the near-zero-compute one (``linear``: one linear layer, batch 8), so a step is
almost all framework; ``--model mlp`` takes the default MLP instead. Every rung is timed for a
short and a long fit whose difference gives the cost of one more step; minus the bare loop's
step, that is the rung's fixed cost:

1. ``bare``: ``scripts.bench.steps.bare_block`` on the run's tensors;
2. ``lightning``: Lightning's ``Trainer`` alone: no logger, no callbacks, no progress bar, no
   checkpoints, the project's ``Classifier`` (automatic optimisation);
3. ``manual``: the same with a manual-optimisation step (zero_grad, ``manual_backward``,
   ``step``): what a lean step could save (a measurement, not a feature);
4. ``callbacks``: the project's run (``src.build.build``) with its default callbacks, nothing
   logged;
5. ``project``: ``python -m src.train`` itself, as ``whole-runs`` times it
   (``scripts.bench.whole_runs.extra_step_ms``: subprocesses, first step to end of training).

Rungs 2-4 are fits in this process, timed by ``scripts.bench.timing.time_block``. Rungs run in
turn and repeat; medians are reported, in wall and CPU time.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import pytorch_lightning as pl

from scripts.bench.settings import LABELS, Benchmark, Setting, log, quiet, with_trainer
from scripts.bench.steps import bare_block
from scripts.bench.timing import time_block
from scripts.bench.whole_runs import extra_step_ms, parse_step_pair
from src.lit import Classifier

RUNGS = {
    "lightning": "Lightning's Trainer alone (automatic optimisation)",
    "manual": "Lightning's Trainer alone, manual-optimisation step",
    "callbacks": "+ the project's callbacks (nothing logged)",
    "project": "+ logging = `python -m src.train` (whole runs)",
}


class ManualStepClassifier(Classifier):
    """``Classifier`` with a manual-optimisation step: the lean step Lightning allows. Measured
    here only: it would need its own gradient clipping and accumulation (Lightning refuses both
    for manual optimisation) and its own scheduler stepping."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        scores, loss = self.scores_and_loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self._log_train(scores, y)
        return loss


def plain_trainer(steps: int, accelerator: str) -> pl.Trainer:
    """Lightning's Trainer with nothing of the project's around the loop."""
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=10**9,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10**9,
    )


def fit_seconds(bench: Benchmark, s: Setting, rung: str, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of a ``steps``-step fit of rung 2, 3 or 4 in this process."""
    cfg = with_trainer(s.cfg, max_steps=steps, val_check_interval=10**9, log_every_n_steps=10**9)
    run = bench.build(cfg)
    classifier, trainer = run.classifier, run.trainer
    if rung in ("lightning", "manual"):
        trainer = plain_trainer(steps, {"cpu": "cpu", "cuda": "gpu"}[s.device.type])
    if rung == "manual":
        classifier = ManualStepClassifier(classifier.net, classifier.optimizer_factory, 10)
    with quiet():
        seconds, cpu, _, _ = time_block(
            lambda: trainer.fit(classifier, datamodule=run.datamodule), s.device
        )
    return seconds, cpu


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="linear", choices=("linear", "mlp"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", default="200,2200", help="the short and the long fit's steps")


def check_arguments(args: argparse.Namespace) -> str | None:
    if parse_step_pair(args.steps) is None:
        return "--steps takes two different positive step counts, e.g. 200,2200"
    if args.repeats < 1:
        return "--repeats must be positive"
    return None


def run(args: argparse.Namespace) -> str:
    """Time every rung ``args.repeats`` times; the table of their fixed costs per step."""
    short, long = parse_step_pair(args.steps)
    extra = long - short
    wall: dict[str, list[float]] = {k: [] for k in ["bare", *RUNGS]}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    with tempfile.TemporaryDirectory(prefix="bench-fixed-cost-") as tmp:
        bench = Benchmark(args, Path(tmp))
        s = bench.setting(args.model)
        tensors = bench.training_tensors(s)  # also the warm-up
        for r in range(args.repeats):
            for rung in RUNGS:
                if rung == "project":
                    w, c, _ = extra_step_ms(bench, s, short, long)
                else:
                    (w0, c0), (w1, c1) = (fit_seconds(bench, s, rung, n) for n in (short, long))
                    w, c = (w1 - w0) / extra * 1e3, (c1 - c0) / extra * 1e3
                wall[rung].append(w * 1e3)  # µs
                cpu[rung].append(c * 1e3)
                log(f"round {r + 1}: {rung} {wall[rung][-1]:.0f} µs/step")
            w, c, _ = bare_block(s, tensors, seed=r, n_steps=extra)
            wall["bare"].append(w * 1e3)
            cpu["bare"].append(c * 1e3)
    med = statistics.median
    bare_wall, bare_cpu = med(wall["bare"]), med(cpu["bare"])
    lines = [
        f"Fixed cost per training step, {LABELS[args.model]}, on {s.device.type}; fits of "
        f"{short} and {long} steps, medians of {args.repeats}.",
        "",
        "| rung | µs/step | fixed cost µs/step (CPU µs) |",
        "|---|---:|---:|",
        f"| bare loop | {bare_wall:.0f} | 0 |",
    ]
    for rung, label in RUNGS.items():
        lines.append(
            f"| {label} | {med(wall[rung]):.0f} | **{med(wall[rung]) - bare_wall:.0f}** "
            f"({med(cpu[rung]) - bare_cpu:.0f}) |"
        )
    return "\n".join(lines)
