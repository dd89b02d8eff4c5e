"""Where the framework's fixed cost per training step goes: a ladder from a bare loop to a run of
``python -m src.train``, one layer at a time.

    python scripts/fixed_cost.py [--model linear|mlp] [--fake] [--data-root data] [--repeats 3]
                                 [--threads 1]

The model is the benchmark's near-zero-compute one (one linear layer, batch 8), so a step is
almost all framework; ``--model mlp`` takes the default MLP instead. Each rung is a real
``trainer.fit`` of the project's run (``src.build.build``: the same data module and classifier),
timed for a short and a long fit whose difference gives the cost of one more step; minus the bare
loop's step, that is the rung's fixed cost:

1. ``bare``: ``scripts.bench.loops.bare_torch_steps`` on the same tensors;
2. ``lightning``: Lightning's ``Trainer`` alone: no logger, no callbacks, no progress bar, no
   checkpoints, the project's ``Classifier`` (automatic optimisation);
3. ``lightning, manual optimisation``: the same with a manual-optimisation step (zero_grad,
   ``manual_backward``, ``step``): what a lean step could save (a measurement, not a feature);
4. ``+ the project's callbacks``: the default callbacks (checkpoints, progress bar, signal,
   NaN check, RNG state, learning-rate monitor), nothing logged;
5. ``+ logging = python -m src.train``: the project's run as it is, TensorBoard every 10 steps.

Rungs run in turn and repeat; medians are reported. Measured in wall and CPU time.
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

import src.build  # noqa: E402
from scripts.bench.loops import bare_torch_steps  # noqa: E402
from scripts.bench.settings import LABELS, MODELS, quiet, quiet_logs  # noqa: E402
from src.config import compose  # noqa: E402
from src.lit import Classifier  # noqa: E402

NO_LOGS = ["trainer.log_every_n_steps=1000000000"]


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


def plain_trainer(steps: int) -> pl.Trainer:
    """Lightning's Trainer with nothing of the project's around the loop."""
    return pl.Trainer(
        accelerator="cpu",
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


def fit_seconds(args, rung: str, steps: int) -> tuple[float, float, tuple]:
    """Wall and CPU seconds of a ``steps``-step fit of the rung, and its training tensors."""
    data = (
        ["data=fake", "data.num_train=5000"] if args.fake else [f"paths.data_dir={args.data_root}"]
    )
    overrides = [*MODELS[args.model], *data]
    overrides += [
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=1000000000",
        "test=false",
    ]
    if rung == "callbacks":
        overrides += NO_LOGS
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(overrides, Path(tmp))
        HydraConfig().set_config(cfg)
        with quiet():
            run = src.build.build(cfg)
            classifier, trainer = run.classifier, run.trainer
            if rung in ("lightning", "manual"):
                trainer = plain_trainer(steps)
            if rung == "manual":
                classifier = ManualStepClassifier(classifier.net, classifier.optimizer_factory, 10)
            cpu, start = time.process_time(), time.perf_counter()
            trainer.fit(classifier, datamodule=run.datamodule)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            return seconds, cpu, run.datamodule.splits["train"]


def bare_parts(args) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
    """The bare loop's network, optimizer and batch size: those of the model's config."""
    from hydra.utils import instantiate

    cfg = compose(
        MODELS[args.model] + (["data=fake"] if args.fake else []), Path(tempfile.mkdtemp())
    )
    net = instantiate(cfg.model)
    return net, instantiate(cfg.optimizer)(net.parameters()), int(cfg.data.batch_size)


RUNGS = {
    "lightning": "Lightning's Trainer alone (automatic optimisation)",
    "manual": "Lightning's Trainer alone, manual-optimisation step",
    "callbacks": "+ the project's callbacks (nothing logged)",
    "project": "+ logging every 10 steps = `python -m src.train`",
}


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="linear", choices=("linear", "mlp"))
    p.add_argument("--fake", action="store_true", help="synthetic data (data=fake)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", default="200,2200", help="the short and the long fit's steps")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.data_root = str(Path(args.data_root).resolve())
    short, long = (int(n) for n in args.steps.split(","))
    torch.set_num_threads(args.threads)
    with quiet_logs({"pytorch_lightning": logging.ERROR, "src": logging.WARNING}):
        return measure(args, short, long)


def measure(args: argparse.Namespace, short: int, long: int) -> str:
    *_, (x, y) = fit_seconds(args, "project", 20)  # warm-up; the tensors of the bare loop
    wall: dict[str, list[float]] = {k: [] for k in ["bare", *RUNGS]}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    for r in range(args.repeats):
        for rung in RUNGS:
            w0, c0, _ = fit_seconds(args, rung, short)
            w1, c1, _ = fit_seconds(args, rung, long)
            wall[rung].append((w1 - w0) / (long - short) * 1e6)
            cpu[rung].append((c1 - c0) / (long - short) * 1e6)
            print(f"round {r + 1}: {rung} {wall[rung][-1]:.0f} us/step", file=sys.stderr)
        net, optimizer, batch_size = bare_parts(args)
        generator = torch.Generator().manual_seed(r)
        c0, w0 = time.process_time(), time.perf_counter()
        bare_torch_steps(net, optimizer, x, y, batch_size, long - short, generator)
        wall["bare"].append((time.perf_counter() - w0) / (long - short) * 1e6)
        cpu["bare"].append((time.process_time() - c0) / (long - short) * 1e6)
    med = statistics.median
    bare_wall, bare_cpu = med(wall["bare"]), med(cpu["bare"])
    lines = [
        f"Fixed cost per training step, {LABELS[args.model]}, {args.threads} "
        f"thread(s); fits of {short} and {long} steps, medians of {args.repeats}.",
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
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
