"""Bare training loops: the same model and data as a run, and nothing around them.

``bare_torch_steps`` and ``bare_numpy_steps`` run training steps on batches gathered from
in-memory data, with no logging, no callbacks and no device sync: the floor that a run through
``src.train`` is compared with.
"""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """``steps`` plain NumPy training steps of ``src.numpy_nn.NumpyMLP``: a shuffled batch gathered
    from the arrays, then ``src.numpy_nn.train_step`` (forward, fused softmax + cross-entropy
    gradient, backward, SGD update), the same step the project's NumPy classifier takes."""
    from src.numpy_nn import train_step

    order = rng.permutation(len(y))
    per_epoch = len(y) // batch_size
    for step in range(steps):
        b = step % per_epoch
        idx = order[b * batch_size : (b + 1) * batch_size]
        train_step(net, optimizer, x[idx], y[idx])
