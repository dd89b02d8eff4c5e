"""``python -m scripts.bench host-copies``: check that no training step copies data from host
memory to the accelerator.

It builds a run as ``python -m src.train`` does (``src.build``, checked by ``src.checks``), trains
a few steps, and records the steps after a warm-up with ``torch.profiler``. On a GPU the data
module holds the whole dataset in device memory and slices batches there, so a training step
should launch no host-to-device copy (``Memcpy HtoD``); one would mean a batch, an index or a
scalar travels from the CPU every step. Exit status 1 when one is found. On a CPU there is no
host-to-device copy to find: it still builds the run, profiles the same steps and reports "n/a".
"""

import argparse
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

from scripts.bench.settings import MODELS, Benchmark, CheckFailed, quiet, with_trainer
from src.checks import check_run

# Event names the CUDA profiler gives host-to-device copies (cudaMemcpy and its async form).
HOST_TO_DEVICE = ("Memcpy HtoD",)


class ProfileSteps(pl.Callback):
    """Profile training steps ``start`` to ``start + count`` (batch fetch included)."""

    def __init__(self, start: int, count: int, activities: list[ProfilerActivity]):
        self.start, self.count = start, count
        self.profiler = profile(activities=activities)
        self.done = False

    def on_train_batch_start(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step == self.start:
            self.profiler.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step == self.start + self.count and not self.done:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.profiler.__exit__(None, None, None)
            self.done = True


def host_to_device_copies(prof: profile) -> int:
    """How many host-to-device copies the profiled window launched."""
    return sum(e.count for e in prof.key_averages() if e.key.startswith(HOST_TO_DEVICE))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mlp", choices=list(MODELS), help="the model of the run")
    p.add_argument("--warmup", type=int, default=5, help="steps before the profiled window")
    p.add_argument("--steps", type=int, default=20, help="steps in the profiled window")


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.steps < 1 or args.warmup < 0:
        return "--steps must be positive, --warmup not negative"
    return None


def run(args: argparse.Namespace) -> str:
    """Profile the window; the report line. ``CheckFailed`` if a step copied from the host."""
    cuda = args.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    probe = ProfileSteps(args.warmup, args.steps, activities)
    with tempfile.TemporaryDirectory(prefix="bench-host-copies-") as tmp:
        bench = Benchmark(args, Path(tmp))
        cfg = bench.compose(args.model, [], "run")
        cfg = with_trainer(cfg, max_steps=args.warmup + args.steps + 1, val_check_interval=10**9)
        run = bench.build(cfg)
        check_run(cfg, run.datamodule, run.classifier)  # data, device, precision: as src.train
        run.trainer.callbacks.append(probe)
        with quiet():
            run.trainer.fit(run.classifier, datamodule=run.datamodule)
    what = f"host-to-device copies in {args.steps} {args.model} steps"
    if not probe.done:
        raise RuntimeError(f"the run stopped before step {args.warmup + args.steps}")
    if not cuda:
        return f"{what}: n/a (no CUDA device)"
    copies = host_to_device_copies(probe.profiler)
    if copies:
        raise CheckFailed(f"{what}: {copies} (FAIL)")
    return f"{what}: 0 (ok)"
