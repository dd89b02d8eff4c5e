"""Time one training step of the NumPy MLP against the same MLP in PyTorch, on this machine's CPU.

    python scripts/benchmark_numpy_mlp.py [--batch 200] [--steps 20] [--repeats 7] [--dtype ...]

A step is what training does per batch: forward, mean cross-entropy, backward, plain SGD update
(``src.numpy_nn.train_step`` for NumPy).
Both networks start from the same weights and see the same random batch (CIFAR-10 shaped). Each
repetition times ``--steps`` NumPy steps, then as many PyTorch steps, so that both see the same load
on a shared machine; the table shows the median over repetitions, in milliseconds per step.

Threads: NumPy's OpenBLAS and PyTorch's OpenMP each start one thread per core. On a small machine
that other work keeps busy, busy-waiting threads can slow either side many times over; compare
with ``OMP_NUM_THREADS=1`` (read by both).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from src.models import MLP  # noqa: E402
from src.numpy_nn import SGD, NumpyMLP, train_step  # noqa: E402

SIZES = ([100], [512, 512, 256])


def torch_step(net: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> float:
    optimizer.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()  # like the NumPy step, end with the loss as a number


def time_ms(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def benchmark(hidden: list[int], batch: int, dtype: str, steps: int, repeats: int):
    """Median ms per step of the NumPy and the PyTorch MLP, timed in alternation."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, 3, 32, 32)) * 60).astype(dtype)  # the mean-image scale
    labels = rng.integers(10, size=batch)
    net = NumpyMLP(3072, hidden, 10, 0.02, dtype=dtype, seed=0)
    optimizer = SGD(net.parameters(), lr=2e-3)

    reference = MLP(3072, hidden, 10, neg_slope=0.02).to(getattr(torch, dtype))
    linears = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():  # the same starting weights
        for layer, linear in zip(net.parameters(), linears, strict=True):
            linear.weight.copy_(torch.from_numpy(layer.params["weight"]))
            linear.bias.copy_(torch.from_numpy(layer.params["bias"]))
    torch_opt = torch.optim.SGD(reference.parameters(), lr=2e-3)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(labels)

    def numpy_run():
        return train_step(net, optimizer, x, labels)  # the step that training runs

    def torch_run():
        return torch_step(reference, torch_opt, x_t, y_t)

    time_ms(numpy_run, 3), time_ms(torch_run, 3)  # warm up: allocations, threads, caches
    numpy_ms, torch_ms = [], []
    for _ in range(repeats):
        numpy_ms.append(time_ms(numpy_run, steps))
        torch_ms.append(time_ms(torch_run, steps))
    return statistics.median(numpy_ms), statistics.median(torch_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    args = parser.parse_args()

    env = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}"
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
    )
    print(
        f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{os.cpu_count()} CPUs; {env}\nbatch {args.batch}, median of {args.repeats} x "
        f"{args.steps} steps\n"
    )
    print("| hidden | dtype | NumPy ms/step | PyTorch ms/step | NumPy / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for dtype in args.dtype:
        for hidden in SIZES:
            np_ms, pt_ms = benchmark(hidden, args.batch, dtype, args.steps, args.repeats)
            print(f"| {hidden} | {dtype} | {np_ms:.2f} | {pt_ms:.2f} | {np_ms / pt_ms:.2f} |")


if __name__ == "__main__":
    main()
