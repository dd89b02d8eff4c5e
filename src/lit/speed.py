"""Speed: what a training step costs, measured inside a real run and in a bare loop beside it.

``scripts/benchmark.py`` uses these pieces to compare ``python -m src.train`` with a minimal
hand-written loop: ``StepTimer`` times the steps of a real Lightning fit, ``bare_torch_steps`` and
``bare_numpy_steps`` run the same model on the same in-memory tensors with nothing around it,
``Milestones`` prints when a run reaches its first training step, and ``peak_memory`` reads the
peak memory of a block of steps. ``check_precision`` and ``check_compile`` say clearly when a
device cannot run a precision or ``torch.compile``, before training starts.
"""

import contextlib
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to do on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------
# Peak memory
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Timing a real run
# ------------------------------------------------------------------------------------------------


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
    ``+callbacks.milestones._target_=src.lit.speed.Milestones``: ``built`` when the callbacks are
    instantiated (imports, config, model built), ``setup`` when the data is loaded, ``first_step``
    when the first training batch is about to be computed. The CPU seconds are the process's
    (all threads) since it started: on a busy machine they show what the wall time would be on an
    idle one.
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

    @classmethod
    def parse(cls, output: str) -> dict[str, tuple[float, float]]:
        """The milestones in a run's output: name -> (unix time, CPU seconds), the first of each
        name."""
        found: dict[str, tuple[float, float]] = {}
        for name, stamp, cpu in re.findall(rf"{cls.PREFIX} (\S+) (\d+\.\d+) (\d+\.\d+)", output):
            found.setdefault(name, (float(stamp), float(cpu)))
        return found


def logs_this_step(trainer: pl.Trainer | None) -> bool:
    """Whether Lightning hands this training step's logged values to the logger.

    It does every ``trainer.log_every_n_steps`` steps (and when the run stops); a value given to
    ``self.log`` on any other step is only stored, at a cost of about a millisecond of Python
    per call on a CPU, and overwritten before anyone reads it. The progress bar, refreshed at the
    same interval, shows the value of the last logging step. Lightning's own test, so that the
    two cannot drift apart; where it is not there (another Lightning version), every step logs.
    """
    if trainer is None:
        return True
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


# ------------------------------------------------------------------------------------------------
# Bare loops: the same model and data, nothing around them
# ------------------------------------------------------------------------------------------------


def bare_torch_steps(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> None:
    """``steps`` plain training steps: a shuffled batch gathered from ``x, y`` (already on the
    device), forward, cross-entropy, backward, optimizer step. No logging, no device sync."""
    net.train()
    device_type = x.device.type
    order = torch.randperm(len(y), generator=generator).to(x.device)
    per_epoch = len(y) // batch_size
    for step in range(steps):
        b = step % per_epoch
        idx = order[b * batch_size : (b + 1) * batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # a gather: faster than x[idx]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(net(xb), yb)
        loss.backward()
        optimizer.step()


def bare_numpy_steps(
    net: Any,
    optimizer: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    steps: int,
    rng: np.random.Generator,
) -> None:
    """``steps`` plain NumPy training steps of ``src.numpy_nn.MLP``: a shuffled batch gathered from
    the arrays, forward, fused softmax + cross-entropy gradient, backward, SGD update."""
    from src.numpy_nn import CrossEntropyModule, one_hot, softmax_cross_entropy_backward

    criterion = CrossEntropyModule()
    order = rng.permutation(len(y))
    per_epoch = len(y) // batch_size
    for step in range(steps):
        b = step % per_epoch
        idx = order[b * batch_size : (b + 1) * batch_size]
        xb, targets = x[idx], one_hot(y[idx], net.n_classes, x.dtype)
        probs = net.forward(xb)
        criterion.forward(probs, targets)
        net.backward_from_logits(softmax_cross_entropy_backward(probs, targets), input_grad=False)
        optimizer.step()


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


# ------------------------------------------------------------------------------------------------
# Precision and torch.compile: refuse clearly what the device cannot do
# ------------------------------------------------------------------------------------------------

#: Lightning's spellings of a precision -> its canonical name.
PRECISION_ALIASES = {
    "32": "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "64": "64-true",
    "64-true": "64-true",
    "16-true": "16-true",
    "bf16-true": "bf16-true",
}
#: The precisions this project trains and tests in; Lightning's others pass the checks unchanged.
SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def canonical_precision(precision: object) -> str:
    """``32``, ``"32"``, ``"bf16"`` ... -> ``"32-true"``, ``"bf16-mixed"`` ...; ValueError if
    Lightning would not know it."""
    key = str(precision).strip()
    if key not in PRECISION_ALIASES:
        raise ValueError(
            f"trainer.precision={precision!r} is not a precision; use one of "
            f"{', '.join(SUPPORTED_PRECISIONS)}"
        )
    return PRECISION_ALIASES[key]


def cuda_supports_bf16(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def check_precision(
    precision: object, device: torch.device | str, numpy_model: bool = False
) -> str:
    """Return the canonical precision if ``device`` can train in it, else raise a ValueError that
    says why and what to use instead.

    Lightning itself would quietly train ``16-mixed`` on a CPU as ``bf16-mixed`` (with a warning);
    here a precision runs as asked or not at all.
    """
    name = canonical_precision(precision)
    device = torch.device(device)
    if numpy_model and name != "32-true":
        raise ValueError(
            f"trainer.precision={precision!r}: the NumPy model computes in NumPy, in its own "
            "model.dtype; mixed precision is for the PyTorch models (use trainer.precision=32)"
        )
    if name in ("16-mixed", "16-true") and device.type == "cpu":
        raise ValueError(
            f"trainer.precision={precision!r} needs a CUDA GPU (float16 autocast with gradient "
            f"scaling); this run is on {device.type}: use 32 or bf16-mixed"
        )
    if name.startswith("bf16") and device.type == "cuda" and not cuda_supports_bf16(device):
        raise ValueError(
            f"trainer.precision={precision!r}: this GPU ({torch.cuda.get_device_name(device)}) "
            "has no native bfloat16; use 16-mixed or 32"
        )
    return name


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a canonical precision, None for full precision."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def training_device(accelerator: object) -> torch.device:
    """The device that Lightning's ``trainer.accelerator`` setting trains on."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda"):
        return torch.device("cuda")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:  # an accelerator torch has no device name for: Lightning will judge it
        return torch.device("cpu")


def check_compile(device: torch.device | str, numpy_model: bool = False) -> None:
    """Raise a ValueError that says why if ``torch.compile`` cannot run on ``device``.

    torch.compile's default backend (Inductor) writes Triton kernels for a CUDA GPU and C++ for a
    CPU: it needs Triton on a GPU of compute capability 7.0 or newer, and a C++ compiler on a CPU.
    """
    device = torch.device(device)
    if numpy_model:
        raise ValueError("compile=true: the NumPy model is not a torch module; nothing to compile")
    if sys.platform == "win32":
        raise ValueError("compile=true: torch.compile does not support Windows; use compile=false")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not torch.cuda.is_available():
            return  # Lightning reports the missing GPU itself

        capability = torch.cuda.get_device_capability(device)
        if capability < (7, 0):
            raise ValueError(
                f"compile=true: this GPU has compute capability {capability[0]}.{capability[1]}; "
                "torch.compile (Triton) needs 7.0 or newer: use compile=false"
            )
        if not has_triton():
            raise ValueError("compile=true needs Triton on a GPU (pip install triton)")
    elif device.type == "cpu":
        compilers = ("g++", "clang++", "c++")
        if not any(shutil.which(c) for c in compilers):
            raise ValueError(
                "compile=true needs a C++ compiler on a CPU (g++ or clang++), and none is on PATH; "
                "install one or use compile=false"
            )
    else:
        raise ValueError(f"compile=true is supported on cuda and cpu, not on {device.type}")
