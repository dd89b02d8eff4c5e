"""Check that no training step copies data from host memory to the accelerator.

    python scripts/check_host_copies.py [--model mlp] [--steps 20] [overrides ...]

It builds a run exactly as ``python -m src.train`` does, trains a few steps, and records the
steps after a warm-up with ``torch.profiler``. On a GPU the data module holds the whole dataset in
device memory and slices batches there, so a training step should launch no host-to-device copy
(``Memcpy HtoD``); one would mean a batch, an index or a scalar travels from the CPU every step.
Exit status 1 when one is found, so ``scripts/gpu_check.sh`` can report it.

On a CPU there is no host-to-device copy to find: the script still builds the run, profiles the
same steps and reports "n/a" (that is what ``scripts/gpu_check.sh --dry-run`` tests).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.build import build  # noqa: E402
from src.checks import check_run  # noqa: E402
from src.config import compose  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", help="model=... of the run (mlp, mlp_numpy, convnet)")
    p.add_argument("--warmup", type=int, default=5, help="steps before the profiled window")
    p.add_argument("--steps", type=int, default=20, help="steps in the profiled window")
    p.add_argument("--output-dir", default=None, help="run folder (default: a temporary one)")
    p.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. data=fake")
    args = p.parse_args(argv)

    out = args.output_dir or tempfile.mkdtemp(prefix="host_copies_")
    overrides = [
        f"model={args.model}",
        f"trainer.max_steps={args.warmup + args.steps + 1}",
        "trainer.val_check_interval=100000",  # no validation inside the window
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
        "callbacks.model_checkpoint=null",
        "trainer.enable_model_summary=false",
        "test=false",
        *args.overrides,
    ]
    cfg = compose(overrides, output_dir=out)
    cuda = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    run = build(cfg)
    check_run(cfg, run.datamodule, run.classifier)  # data, device, precision, as src.train does
    probe = ProfileSteps(args.warmup, args.steps, activities)
    run.trainer.callbacks.append(probe)
    run.trainer.fit(run.classifier, datamodule=run.datamodule)
    if not probe.done:
        print(f"error: the run stopped before step {args.warmup + args.steps}", file=sys.stderr)
        return 2
    if not cuda:
        print(f"host-to-device copies in {args.steps} {args.model} steps: n/a (no CUDA device)")
        return 0
    copies = host_to_device_copies(probe.profiler)
    verdict = "ok" if copies == 0 else "FAIL"
    print(f"host-to-device copies in {args.steps} {args.model} steps: {copies} ({verdict})")
    return 0 if copies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
