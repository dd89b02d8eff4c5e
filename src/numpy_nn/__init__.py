"""The NumPy MLP of the assignment's part 1: modules with hand-written backward passes, and SGD.

NumPy only: importing this package never imports torch. ``src.lit.NumpyClassifier`` trains it
through the same entry point as the PyTorch models (``python -m src.train model=mlp_numpy``), one
``train_step`` per batch.
"""

from src.numpy_nn.mlp import NumpyMLP
from src.numpy_nn.modules import (
    CrossEntropyModule,
    LeakyReLUModule,
    LinearModule,
    SoftMaxModule,
    one_hot,
    softmax_cross_entropy_backward,
)
from src.numpy_nn.optim import SGD
from src.numpy_nn.training import train_step

__all__ = [
    "SGD",
    "CrossEntropyModule",
    "LeakyReLUModule",
    "LinearModule",
    "NumpyMLP",
    "SoftMaxModule",
    "one_hot",
    "softmax_cross_entropy_backward",
    "train_step",
]
