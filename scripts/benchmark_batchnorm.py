"""Time and measure the memory of one training step of each batch norm, on this machine's device.

    python scripts/benchmark_batchnorm.py [--device cpu|cuda] [--threads N] [--min-run-time 0.5]

A step is a forward pass in training mode (running averages updated) and a backward pass of a
random output gradient, to the input and to both parameters, as inside a network. Compared:
``torch.nn.BatchNorm1d``/``BatchNorm2d``, ``CustomBatchNormAutograd`` (autograd's backward),
``CustomBatchNormManualModule`` (the hand-written backward) and the bare
``CustomBatchNormManualFunction`` (no running averages), in float32, at a few sizes.

Columns:

- time: median ms per step (``torch.utils.benchmark``; on CPU with ``--threads`` threads, by
  default all of torch's: use 1 on a machine shared with other work, for steadier numbers).
- peak: the most memory the step's own allocations held at once (output, saved tensors,
  temporaries, gradients; the input and the parameters are allocated before and not counted).
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
  allocated before the step. CPU: torch's CPU allocator events recorded by ``torch.profiler``
  (``profile_memory=True``), summed in time order; its peak is the same quantity.
- saved: what the forward pass keeps for the backward (``saved_tensors_hooks``, distinct storages).
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from src.models.batchnorm import (  # noqa: E402
    CustomBatchNorm2dAutograd,
    CustomBatchNorm2dManualModule,
    CustomBatchNormAutograd,
    CustomBatchNormManualFunction,
    CustomBatchNormManualModule,
)

MiB = 2**20


class BareManualFunction(nn.Module):
    """The manual function alone, without the running averages that the module also updates."""

    def __init__(self, n: int):
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))

    def forward(self, x: Tensor) -> Tensor:
        return CustomBatchNormManualFunction.apply(x, self.gamma, self.beta)


LAYERS_1D = {
    "torch BatchNorm1d": nn.BatchNorm1d,
    "autograd": CustomBatchNormAutograd,
    "manual module": CustomBatchNormManualModule,
    "manual function only": BareManualFunction,
}
LAYERS_2D = {
    "torch BatchNorm2d": nn.BatchNorm2d,
    "autograd 2d": CustomBatchNorm2dAutograd,
    "manual module 2d": CustomBatchNorm2dManualModule,
    "manual function only": BareManualFunction,
}
# (batch, features): the assignment's MLP layer, then wider ones. (batch, channels, h, w): the
# ConvNet's first block at batch 32, a middle one, and a larger batch.
SHAPES_1D = [(200, 100), (1024, 1024), (4096, 1024)]
SHAPES_2D = [(32, 64, 32, 32), (32, 256, 8, 8), (128, 128, 16, 16)]


def make_step(layer: nn.Module, shape: tuple[int, ...], device: torch.device) -> Callable[[], None]:
    """One forward and backward of ``layer`` on a fixed random batch; gradients dropped after."""
    x = torch.randn(shape, device=device).requires_grad_()
    grad = torch.randn(shape, device=device)

    def step() -> None:
        layer(x).backward(grad)
        x.grad = None
        layer.zero_grad(set_to_none=True)

    return step


def step_time_ms(step: Callable[[], None], min_run_time: float) -> float:
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _cpu_allocations(node, out: list[tuple[int, int]]) -> None:
    """(time, bytes) of every allocator event (frees are negative) under a profiler event."""
    if type(node.extra_fields).__name__ == "_ExtraFields_Allocation":
        out.append((node.start_time_ns, node.extra_fields.alloc_size))
    for child in node.children:
        _cpu_allocations(child, out)


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """The peak of memory allocated during one step, above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events: list[tuple[int, int]] = []
    for root in prof.profiler.kineto_results.experimental_event_tree():
        _cpu_allocations(root, events)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def saved_bytes(layer: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    """Bytes of the distinct storages the forward pass saves for the backward."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(shape, device=device).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    print(f"device: {name}, torch {torch.__version__}, {threads} threads, float32\n")
    print("| layer | input shape | time (ms) | vs torch | peak (MiB) | saved (MiB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for layers, shapes in ((LAYERS_1D, SHAPES_1D), (LAYERS_2D, SHAPES_2D)):
        for shape in shapes:
            baseline = None
            for label, cls in layers.items():
                layer = cls(shape[1]).to(device).train()
                step = make_step(layer, shape, device)
                step()  # warm up (allocator caches, lazy initialisation)
                ms = step_time_ms(step, args.min_run_time)
                baseline = baseline or ms
                peak = peak_bytes(step, device) / MiB
                saved = saved_bytes(layer, shape, device) / MiB
                print(
                    f"| {label} | {tuple(shape)} | {ms:.3f} | {ms / baseline:.2f}x "
                    f"| {peak:.2f} | {saved:.2f} |"
                )


if __name__ == "__main__":
    main()
