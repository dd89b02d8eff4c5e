"""Training steps through ``src.train`` vs a bare loop: ms per step, paired block by block.

Blocks alternate (project, bare, bare, project, ...) and repeat, and each ratio is taken between
neighbouring blocks, so that the ratios stay fair on a machine busy with other work.
"""

import numpy as np
import torch
from hydra.utils import instantiate

from scripts.bench.loops import bare_numpy_steps, bare_torch_steps
from scripts.bench.settings import Benchmark, Setting, log, with_trainer
from scripts.bench.timing import StepTimer, time_block
from src.build import Run
from src.checks import autocast_dtype


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
    s: Setting, run: Run, seed: int, n_steps: int | None = None
) -> tuple[float, float, tuple]:
    """ms and CPU ms per step of a bare loop of ``n_steps`` (default ``s.steps``) over the run's
    training tensors, and its peak memory: the same model class, batch size and optimizer
    settings."""
    n_steps = n_steps or s.steps
    x, y = run.datamodule.splits["train"]
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
                bare = bare_block(s, runs[s.name], seed=r)
            *project, runs[s.name] = project_block(bench, s)
            if not bare_first:
                bare = bare_block(s, runs[s.name], seed=r)
            s.project.add(*project)
            s.bare.add(*bare)
            s.ratios.append(project[0] / bare[0])
            s.cpu_ratios.append(project[1] / bare[1])
    return runs
