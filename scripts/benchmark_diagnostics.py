"""What the diagnostics callback costs: step time with ``callbacks=diagnostics`` and without.

    python scripts/benchmark_diagnostics.py [--models mlp,mlp_deep,mlp_numpy,convnet]
        [--steps 100] [--repeats 3] [--threads 1] [--device cpu]

Each model trains on fake data (CIFAR-10's shapes) with its own recipe, through the project's
``src.build.build``, in three variants run in turn (rotated each repeat): ``off`` (the default
callbacks), ``on`` (``callbacks=diagnostics``: scalars at every logging step, histograms every 20th
logging step, the defaults) and ``on, histograms always`` (``histogram_every=1``). The timed window
is ``--steps`` steps after 10 warm-up steps (``StepTimer`` of ``scripts/bench/timing.py``: from a
step to the start of the next), so it holds ``steps / log_every_n_steps`` logging steps. Reported:
median wall ms and process CPU ms per step, the overhead against ``off``, and the CPU ms per step
spent inside the callback's own hooks (and its share of the ``off`` step's CPU time). On a machine
shared with other work the step times are noisy (CPU time is the steadier); the hooks' own time is
the clearest sign."""

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import src.build  # noqa: E402
import src.run_folder  # noqa: E402, F401  (registers the resolver conf/hydra uses)
from scripts.bench.timing import StepTimer  # noqa: E402
from src.lit.diagnostics import Diagnostics  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS = {
    "mlp": ["model=mlp"],
    "mlp_deep": ["experiment=mlp_deep"],
    "mlp_numpy": ["model=mlp_numpy"],
    "convnet": ["model=convnet"],
}
VARIANTS = {
    "off": [],
    "on": ["callbacks=diagnostics"],
    "on, histograms always": ["callbacks=diagnostics", "callbacks.diagnostics.histogram_every=1"],
}
WARMUP = 10


def time_hooks(callback: Diagnostics, first: int, last: int) -> list[float]:
    """Make ``callback``'s hooks add their CPU seconds (the process's, so the event writer thread's
    work is counted) in steps ``first..last`` to the returned list's one element: the callback's
    own cost, which a busy machine's time-sharing does not inflate as it does wall time."""
    spent = [0.0]
    in_window = [False]

    def timed(name: str):
        hook = getattr(callback, name)

        def run(trainer, *args, **kwargs):
            if name == "on_train_batch_start":
                in_window[0] = first <= trainer.global_step < last
            t0 = time.process_time()
            hook(trainer, *args, **kwargs)
            if in_window[0]:
                spent[0] += time.process_time() - t0

        return run

    for name in ("on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end"):
        setattr(callback, name, timed(name))
    return spent


def step_ms(
    overrides: list[str], steps: int, device: str, workdir: Path
) -> tuple[float, float, float]:
    """Wall and CPU milliseconds per training step of one fit of ``overrides``, and the CPU
    milliseconds per step spent inside the diagnostics' hooks (0 without them)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(workdir)
        cfg.paths.output_root = str(workdir.parent)
        cfg.trainer.max_steps = WARMUP + steps + 1
        cfg.trainer.val_check_interval = 10**9
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.accelerator = device
        cfg.callbacks.model_checkpoint = cfg.callbacks.last_checkpoint = None
        cfg.callbacks.progress_bar = None
    HydraConfig().set_config(cfg)
    timer = StepTimer(WARMUP, steps, device)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        run = src.build.build(cfg)
        run.trainer.callbacks.insert(0, timer)
        spent = [0.0]
        for callback in run.trainer.callbacks:
            if isinstance(callback, Diagnostics):
                spent = time_hooks(callback, WARMUP, WARMUP + steps)
        run.trainer.fit(run.classifier, datamodule=run.datamodule)
    return 1000 * timer.seconds / steps, 1000 * timer.cpu_seconds / steps, 1000 * spent[0] / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mlp,mlp_deep,mlp_numpy", help=",".join(MODELS))
    p.add_argument("--steps", type=int, default=100, help="timed steps (ConvNet on CPU: fewer)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (1: steadier on a busy machine)")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    if unknown := [m for m in models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("src").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")

    print(f"{args.steps} timed steps, {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(
        f"{'model':<10} {'variant':<22} {'wall ms':>8} {'cpu ms':>8} {'wall +%':>8} {'cpu +%':>7}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-diagnostics-") as tmp:
        for model in models:
            times: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
            names = list(VARIANTS)
            for r in range(args.repeats):
                for variant in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
                    overrides = ["data=fake", *MODELS[model], *VARIANTS[variant]]
                    workdir = Path(tmp) / f"{model}-{r}-{names.index(variant)}"
                    times[variant].append(step_ms(overrides, args.steps, args.device, workdir))
            base_wall = statistics.median(t[0] for t in times["off"])
            base_cpu = statistics.median(t[1] for t in times["off"])
            for variant, pairs in times.items():
                wall = statistics.median(t[0] for t in pairs)
                cpu = statistics.median(t[1] for t in pairs)
                hooks = statistics.median(t[2] for t in pairs)
                print(
                    f"{model:<10} {variant:<22} {wall:>8.2f} {cpu:>8.2f} "
                    f"{100 * (wall / base_wall - 1):>+8.1f} {100 * (cpu / base_cpu - 1):>+7.1f} "
                    f"{hooks:>12.3f} {100 * hooks / base_cpu:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
