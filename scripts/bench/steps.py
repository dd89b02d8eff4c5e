"""``python -m scripts.bench steps``: how fast each model trains through ``src.train``, side by
side with a bare loop, and what its evaluations and data loading cost.

For each model it builds a run exactly as ``python -m src.train`` does (``src.build.build`` on the
composed Hydra config: the same data module, classifier, callbacks, TensorBoard logger and trainer)
and times training steps of a real ``trainer.fit``, with validation pushed out of the way. Beside
it, a bare loop (``scripts.bench.loops``) trains the same model class with the same batch size and
optimizer settings on batches gathered from the same in-memory tensors. Blocks alternate (project,
bare, bare, project, ...) and repeat, and each ratio is taken between neighbouring blocks, so that
the ratios stay fair on a machine busy with other work. Also measured: one pass over the test set
(``scripts.bench.evaluation``), the default MLP's share of a run spent in validation, and the data
module's ``load()`` and ``setup()`` (``scripts.bench.startup``). ``scripts.bench.report`` renders
the tables; ``docs/benchmark.md`` explains them.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import Tensor

from scripts.bench.evaluation import measure_test_passes, measure_validation_shares
from scripts.bench.loops import bare_numpy_steps, bare_torch_steps
from scripts.bench.report import render_steps
from scripts.bench.settings import MODELS, Benchmark, Setting, log, with_trainer
from scripts.bench.startup import data_loading
from scripts.bench.timing import StepTimer, time_block
from src.build import Run
from src.checks import autocast_dtype

#: The models timed by default (``mlp_deep`` only on request).
DEFAULT_MODELS = ("linear", "mlp_numpy", "mlp", "mlp_512_512_256", "convnet")


def project_block(bench: Benchmark, s: Setting) -> tuple[float, float, tuple, Run]:
    """ms and CPU ms per step of a real fit, its peak memory, and the run (validation pushed out
    of the way: it is timed on its own)."""
    cfg = with_trainer(s.cfg, max_steps=s.warmup + s.steps + 1, val_check_interval=10**9)
    timer = StepTimer(s.warmup, s.steps, s.device)
    run = bench.fit(cfg, [timer])
    if timer.ms_per_step is None:
        raise RuntimeError(f"{s.name}: the fit ended before {s.warmup + s.steps} steps")
    return timer.ms_per_step, timer.cpu_ms_per_step, (timer.peak_mib, timer.base_mib), run


def bare_block(
    s: Setting, train: tuple[Tensor, Tensor], seed: int, n_steps: int | None = None
) -> tuple[float, float, tuple]:
    """ms and CPU ms per step of a bare loop of ``n_steps`` (default ``s.steps``) over a run's
    training tensors ``train``, and its peak memory: the same model class, batch size and
    optimizer settings."""
    n_steps = n_steps or s.steps
    x, y = train
    if x.device.type != s.device.type and not s.numpy:
        raise RuntimeError(
            f"{s.name}: the data module holds the data on {x.device}, not on "
            f"{s.device}: every batch would be copied to the device"
        )
    net = instantiate(s.cfg.model)
    optimizer_factory = instantiate(s.cfg.optimizer)
    if s.numpy:
        optimizer = optimizer_factory(net.parameters())
        xn, yn = x.numpy(), y.numpy()
        rng = np.random.default_rng(seed)

        def steps(n: int) -> None:
            bare_numpy_steps(net, optimizer, xn, yn, s.batch_size, n, rng)

    else:
        net = net.to(s.device)
        if s.compile:
            net.compile()
        optimizer = optimizer_factory(net.parameters())
        generator = torch.Generator().manual_seed(seed)
        dtype = autocast_dtype(s.precision)

        def steps(n: int) -> None:
            bare_torch_steps(net, optimizer, x, y, s.batch_size, n, generator, dtype)

    steps(s.warmup)
    seconds, cpu, peak, base = time_block(lambda: steps(n_steps), s.device)
    return seconds / n_steps * 1e3, cpu / n_steps * 1e3, (peak, base)


def measure_steps(bench: Benchmark, settings: list[Setting], repeats: int) -> dict[str, Run]:
    """Time ``repeats`` project/bare block pairs of every setting; return each model's last run.

    Round-robin over models, alternating which variant goes first (ABBA), so that every
    comparison, also across models, is between blocks that ran close together in time.
    """
    runs: dict[str, Run] = {}
    for r in range(repeats):
        for s in settings:
            log(f"round {r + 1}/{repeats}: {s.name}")
            bare_first = r % 2 == 1 and s.name in runs
            if bare_first:
                bare = bare_block(s, runs[s.name].datamodule.splits["train"], seed=r)
            *project, runs[s.name] = project_block(bench, s)
            if not bare_first:
                bare = bare_block(s, runs[s.name].datamodule.splits["train"], seed=r)
            s.project.add(*project)
            s.bare.add(*bare)
            s.ratios.append(project[0] / bare[0])
            s.cpu_ratios.append(project[1] / bare[1])
    return runs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"of {','.join(MODELS)}")
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps per block (ConvNet on CPU: a tenth)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each block")
    p.add_argument("--repeats", type=int, default=5, help="project/bare block pairs per model")
    p.add_argument("--eval-repeats", type=int, default=2, help="test passes timed per model")
    p.add_argument("--no-eval-share", action="store_true", help="skip the validation-share fit")
    p.add_argument(
        "--eval-interval",
        type=int,
        help="steps between validations in the validation-share fit (default: the model's)",
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one sentence, or None."""
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or args.eval_repeats < 0:
        return "--steps and --repeats must be positive, --warmup and --eval-repeats not negative"
    return None


def run(args: argparse.Namespace) -> str:
    """Measure every model's steps, test pass and validation share, and the data loading."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
        bench = Benchmark(args, Path(tmp))
        settings = [bench.setting(name, args.steps, args.warmup) for name in args.models]
        runs = measure_steps(bench, settings, args.repeats)
        measure_test_passes(settings, runs, args.eval_repeats)
        eval_share = not args.no_eval_share and "mlp" in args.models
        shares = measure_validation_shares(bench, args.eval_interval) if eval_share else []
        log("data loading")
        loads = data_loading(bench, 3)
    return render_steps(args, settings, shares, loads, time.perf_counter() - began)
