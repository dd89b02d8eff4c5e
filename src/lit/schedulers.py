"""Learning-rate schedules with an optional linear warm-up, built from config (conf/scheduler/)."""

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler

SchedulerFactory = Callable[[torch.optim.Optimizer], LRScheduler]


def with_warmup(
    optimizer: torch.optim.Optimizer, schedule: SchedulerFactory, warmup_steps: int = 0
) -> LRScheduler:
    """``schedule(optimizer)``, its learning rate multiplied during the first ``warmup_steps``
    steps by a factor that rises linearly from ``1 / warmup_steps`` to 1.

    The two are chained (``torch.optim.lr_scheduler.ChainedScheduler``): their factors multiply,
    so ``schedule`` keeps its own step count (a cosine over ``trainer.max_steps`` still ends
    there). ``schedule`` must be chainable (StepLR, CosineAnnealingLR with ``eta_min=0``, ...):
    OneCycleLR sets absolute rates and warms up by itself (its ``pct_start``).
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(
            f"scheduler.warmup_steps must be a non-negative integer, got {warmup_steps!r}"
        )
    main = schedule(optimizer)
    if warmup_steps == 0:
        return main
    warmup = LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps)
    return ChainedScheduler([warmup, main], optimizer=optimizer)
