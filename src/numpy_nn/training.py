"""One training step of a NumPy network: the step that training and the benchmarks share."""

import numpy as np

from src.numpy_nn.mlp import NumpyMLP
from src.numpy_nn.modules import CrossEntropyModule, one_hot, softmax_cross_entropy_backward
from src.numpy_nn.optim import SGD

_cross_entropy = CrossEntropyModule()  # stateless: one for every step


def train_step(
    net: NumpyMLP, optimizer: SGD, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """Train ``net`` on one batch: forward, mean cross-entropy, the fused softmax + cross-entropy
    gradient (docs/derivations.md, eq. 1.15), backward and an ``optimizer`` step.

    ``x`` is a batch of inputs (batch, ...), ``y`` its integer class labels (batch,). Returns the
    batch's mean cross-entropy and the class probabilities (batch, n_classes), both from before the
    update. The gradient of the inputs is skipped: training has no use for it.
    """
    probs = net.forward(x)
    targets = one_hot(y, net.n_classes, probs.dtype)
    loss = _cross_entropy.forward(probs, targets)
    net.backward_from_logits(softmax_cross_entropy_backward(probs, targets), input_grad=False)
    optimizer.step()
    return loss, probs
