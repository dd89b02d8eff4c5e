"""``python -m scripts.bench batchnorm``: time and measure the memory of one training step of each
batch norm, on this machine's device.

A step is a forward pass in training mode (running averages updated) and a backward pass of a
random output gradient, to the input and to both parameters, as inside a network. Compared:
``torch.nn.BatchNorm1d``/``BatchNorm2d``, ``CustomBatchNormAutograd`` (autograd's backward),
``CustomBatchNormManualModule`` (the hand-written backward) and the bare
``CustomBatchNormManualFunction`` (no running averages), in float32, at a few sizes.

Columns:

- time: median ms per step (``scripts.bench.timing.op_ms``; on CPU with ``--threads`` threads, by
  default all of torch's: use 1 on a machine shared with other work, for steadier numbers).
- peak: the most memory the step's own allocations held at once (output, saved tensors,
  temporaries, gradients; the input and the parameters are allocated before and not counted):
  ``scripts.bench.timing.allocation_peak``.
- saved: what the forward pass keeps for the backward (``saved_tensors_hooks``, distinct storages).
"""

import argparse
from collections.abc import Callable

import torch
from torch import Tensor, nn

from scripts.bench.timing import allocation_peak, op_ms
from src.models.batchnorm import (
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per timing")
    p.add_argument(
        "--shapes", type=int, default=len(SHAPES_1D), help="the first N shapes of each kind"
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.min_run_time <= 0 or args.shapes < 1:
        return "--min-run-time and --shapes must be positive"
    return None


def run(args: argparse.Namespace) -> str:
    """Every layer at every shape: ms per step, its peak memory and what it saves."""
    device = args.device
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32",
        "",
        "| layer | input shape | time (ms) | vs torch | peak (MiB) | saved (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for layers, shapes in ((LAYERS_1D, SHAPES_1D), (LAYERS_2D, SHAPES_2D)):
        for shape in shapes[: args.shapes]:
            baseline = None
            for label, cls in layers.items():
                layer = cls(shape[1]).to(device).train()
                step = make_step(layer, shape, device)
                step()  # warm up (allocator caches, lazy initialisation)
                ms = op_ms(step, args.min_run_time)
                baseline = baseline or ms
                peak = allocation_peak(step, device) / MiB
                saved = saved_bytes(layer, shape, device) / MiB
                lines.append(
                    f"| {label} | {tuple(shape)} | {ms:.3f} | {ms / baseline:.2f}x "
                    f"| {peak:.2f} | {saved:.2f} |"
                )
    return "\n".join(lines)
