"""What a block of training steps costs: wall and CPU time, and peak memory.

``StepTimer`` times the steps of a real Lightning fit, ``StepClock`` stamps every step and
validation of one, ``Milestones`` prints when a run launched in a subprocess reaches its first
training step, and ``time_block`` times a bare loop the same way.
"""

import contextlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to do on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# -- peak memory --

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mib(field: str) -> float | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def current_memory(device: torch.device | str) -> float | None:
    """Memory held now in MiB: CUDA tensors allocated, or the process's resident set on a CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _status_mib("VmRSS")


def reset_peak_memory(device: torch.device | str) -> float | None:
    """Start a new peak and return the memory held now (MiB), the baseline of that peak: CUDA's
    allocator statistics, or on CPU the process's resident high-water mark (Linux: writing 5 to
    ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # Not Linux, or not permitted: the peak then counts from the process start.
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text("5")
    return current_memory(device)


def peak_memory(device: torch.device | str) -> float | None:
    """Peak memory in MiB since ``reset_peak_memory``.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors the allocator handed out, data included).
    CPU: the process's peak resident set size (``VmHWM``): everything the process held in RAM at
    its peak (libraries, the dataset, the model, activations, allocator caches). None where the
    system does not say.
    """
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mib("VmHWM")
    if peak is None:  # not Linux: ru_maxrss (kB on Linux, bytes on macOS), never reset
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = rss / 2**20 if sys.platform == "darwin" else rss / 1024
    return peak


# -- timing a real run --


class StepTimer(pl.Callback):
    """Times training steps ``warmup .. warmup + steps`` of a fit, start to start.

    One step's time is from one ``on_train_batch_start`` to the next: the step itself, the hooks,
    logging, the progress bar, and fetching the next batch. The fit must run at least
    ``warmup + steps + 1`` steps. The peak memory of the timed steps is read at the end of the
    window. Also records the wall time of each validation pass (``eval_seconds``).
    """

    def __init__(self, warmup: int, steps: int, device: torch.device | str = "cpu"):
        self.warmup, self.steps, self.device = warmup, steps, torch.device(device)
        self.seconds: float | None = None  # the timed window, wall clock
        self.cpu_seconds: float | None = None  # the process's CPU time in the window (all threads)
        self.peak_mib: float | None = None
        self.base_mib: float | None = None  # the memory held when the timed steps began
        self.eval_seconds: list[float] = []
        self._t0: float | None = None
        self._cpu0 = 0.0
        self._eval_start: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        step = trainer.global_step
        if step == self.warmup:
            synchronize(self.device)
            self.base_mib = reset_peak_memory(self.device)
            self._cpu0, self._t0 = time.process_time(), time.perf_counter()
        elif step == self.warmup + self.steps and self._t0 is not None:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self._t0
            self.cpu_seconds = time.process_time() - self._cpu0
            self.peak_mib = peak_memory(self.device)

    def on_validation_start(self, trainer: pl.Trainer, *_: Any) -> None:
        synchronize(self.device)
        self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, *_: Any) -> None:
        synchronize(self.device)
        if self._eval_start is not None:
            self.eval_seconds.append(time.perf_counter() - self._eval_start)

    @property
    def ms_per_step(self) -> float | None:
        return None if self.seconds is None else self.seconds / self.steps * 1e3

    @property
    def cpu_ms_per_step(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds / self.steps * 1e3


class StepClock(pl.Callback):
    """Records ``time.perf_counter()`` at the start of every training step, around every
    validation pass, and at the end of the fit: the gaps between steps show where a run spends its
    time besides training (validation, checkpoints)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.starts: list[float] = []
        self.validations: list[tuple[float, float]] = []
        self.end: float | None = None
        self._validation_start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    def on_validation_start(self, trainer: pl.Trainer, *_: Any) -> None:
        synchronize(self.device)
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, *_: Any) -> None:
        # Callbacks run in order, and Lightning puts checkpoint callbacks last: this is before the
        # checkpoints of this validation are written.
        synchronize(self.device)
        self.validations.append((self._validation_start, time.perf_counter()))

    def on_train_end(self, trainer: pl.Trainer, *_: Any) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()


class Milestones(pl.Callback):
    """Prints ``MILESTONE <name> <unix time> <CPU seconds>`` lines as a run gets going.

    For a start-up benchmark that launches ``python -m src.train`` in a subprocess with
    ``+callbacks.milestones._target_=scripts.bench.timing.Milestones``: ``built`` when the
    callbacks are instantiated (imports, config, model built), ``setup`` when the data is
    loaded, ``first_step`` when the first training batch is about to be computed, ``train_end``
    when the last step (and its checkpoint) is done. The CPU
    seconds are the process's (all threads) since it started: on a busy machine they show what
    the wall time would be on an idle one.
    """

    PREFIX = "MILESTONE"

    def __init__(self):
        self._stamp("built")
        self._seen_first = False

    def _stamp(self, name: str) -> None:
        # On a line of its own: a progress bar may have left the cursor mid-line.
        print(f"\n{self.PREFIX} {name} {time.time():.6f} {time.process_time():.6f}", flush=True)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stamp(f"setup_{getattr(stage, 'value', stage)}")

    def on_train_batch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        if not self._seen_first:
            self._seen_first = True
            self._stamp("first_step")

    def on_train_end(self, trainer: pl.Trainer, *_: Any) -> None:
        self._stamp("train_end")

    @classmethod
    def parse(cls, output: str) -> dict[str, tuple[float, float]]:
        """The milestones in a run's output: name -> (unix time, CPU seconds), the first of each
        name."""
        found: dict[str, tuple[float, float]] = {}
        for name, stamp, cpu in re.findall(rf"{cls.PREFIX} (\S+) (\d+\.\d+) (\d+\.\d+)", output):
            found.setdefault(name, (float(stamp), float(cpu)))
        return found


def time_block(
    run: Callable[[], None], device: torch.device | str
) -> tuple[float, float, float | None, float | None]:
    """Wall seconds that ``run()`` takes (device work included), the process's CPU seconds in
    that time (all threads), its peak memory and the memory held before it (MiB)."""
    synchronize(device)
    base = reset_peak_memory(device)
    cpu, start = time.process_time(), time.perf_counter()
    run()
    synchronize(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, peak_memory(device), base


# -- one small operation --


def op_ms(op: Callable[[], None], min_run_time: float) -> float:
    """Median ms of ``op()`` (``torch.utils.benchmark``: repeated for ``min_run_time`` seconds,
    device work included, with torch's current number of threads)."""
    from torch.utils.benchmark import Timer  # imported here: its import warns without CUDA

    timer = Timer("op()", globals={"op": op}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _allocations(node, out: list[tuple[int, int]]) -> None:
    """(time, bytes) of every allocator event (frees are negative) under a profiler event."""
    if type(node.extra_fields).__name__ == "_ExtraFields_Allocation":
        out.append((node.start_time_ns, node.extra_fields.alloc_size))
    for child in node.children:
        _allocations(child, out)


def allocation_peak(op: Callable[[], None], device: torch.device) -> int:
    """The most bytes ``op()``'s own allocations held at once, above what was allocated before.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory allocated
    before. CPU: torch's allocator events recorded by ``torch.profiler`` (``profile_memory``),
    summed in time order.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        op()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        op()
    events: list[tuple[int, int]] = []
    for root in prof.profiler.kineto_results.experimental_event_tree():
        _allocations(root, events)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak
