"""``python -m scripts.bench numpy``: a training step of the NumPy MLP against the same MLP in
PyTorch, bare, on this machine's CPU, at a few sizes and dtypes.

A step is what training does per batch: a shuffled batch gathered from in-memory data, forward,
mean cross-entropy, backward, plain SGD update: ``scripts.bench.loops.bare_numpy_steps``
(``src.numpy_nn.train_step``) and ``bare_torch_steps``, on the same random CIFAR-10-shaped data.
Each repetition times ``--steps`` NumPy steps, then as many PyTorch steps
(``scripts.bench.timing.time_block``), so that both see the same load on a shared machine; the
table shows the median over repetitions, in ms per step. ``steps`` compares the two models
through the project as well; this isolates the step itself, also at sizes and dtypes the project
does not train by default.

Threads: NumPy's OpenBLAS and PyTorch's OpenMP each start one thread per core. On a small machine
that other work keeps busy, busy-waiting threads can slow either side many times over; compare
with ``--threads 1`` (which sets ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` for both).
"""

import argparse
import os
import statistics

import numpy as np
import torch

from scripts.bench.loops import bare_numpy_steps, bare_torch_steps
from scripts.bench.timing import time_block
from src.models import MLP
from src.numpy_nn import SGD, NumpyMLP

SIZES = ([100], [512, 512, 256])
LR = 2e-3
CPU = torch.device("cpu")


def step_ms(hidden: list[int], batch: int, dtype: str, steps: int, repeats: int):
    """Median ms per step of the NumPy and the PyTorch MLP, timed in alternation."""
    rng = np.random.default_rng(0)
    n = batch * 8  # a few batches' worth of data to shuffle through
    x = (rng.standard_normal((n, 3, 32, 32)) * 60).astype(dtype)  # the mean-image scale
    y = rng.integers(10, size=n)
    numpy_net = NumpyMLP(3072, hidden, 10, 0.02, dtype=dtype, seed=0)
    numpy_opt = SGD(numpy_net.parameters(), lr=LR)
    torch_net = MLP(3072, hidden, 10, neg_slope=0.02).to(getattr(torch, dtype))
    torch_opt = torch.optim.SGD(torch_net.parameters(), lr=LR)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)

    def numpy_steps(k: int) -> None:
        bare_numpy_steps(numpy_net, numpy_opt, x, y, batch, k, rng)

    def torch_steps(k: int) -> None:
        bare_torch_steps(torch_net, torch_opt, x_t, y_t, batch, k, generator)

    numpy_steps(3), torch_steps(3)  # warm up: allocations, threads, caches
    numpy_ms, torch_ms = [], []
    for _ in range(repeats):
        numpy_ms.append(time_block(lambda: numpy_steps(steps), CPU)[0] / steps * 1e3)
        torch_ms.append(time_block(lambda: torch_steps(steps), CPU)[0] / steps * 1e3)
    return statistics.median(numpy_ms), statistics.median(torch_ms)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--steps", type=int, default=20, help="steps per timed repetition")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])


def check_arguments(args: argparse.Namespace) -> str | None:
    if min(args.batch, args.steps, args.repeats) < 1:
        return "--batch, --steps and --repeats must be positive"
    return None


def run(args: argparse.Namespace) -> str:
    """The table: every size and dtype, NumPy and PyTorch ms per step and their ratio."""
    threads = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    )
    lines = [
        f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{os.cpu_count()} CPUs; {threads}; batch {args.batch}, median of {args.repeats} x "
        f"{args.steps} steps",
        "",
        "| hidden | dtype | NumPy ms/step | PyTorch ms/step | NumPy / PyTorch |",
        "|---|---|---:|---:|---:|",
    ]
    for dtype in args.dtype:
        for hidden in SIZES:
            np_ms, pt_ms = step_ms(hidden, args.batch, dtype, args.steps, args.repeats)
            ratio = np_ms / pt_ms
            lines.append(f"| {hidden} | {dtype} | {np_ms:.2f} | {pt_ms:.2f} | {ratio:.2f} |")
    return "\n".join(lines)
