"""The NumPy MLP of the assignment's part 1: modules with hand-written backward passes, and SGD.

NumPy only: no torch here. ``src.lit.NumpyClassifier`` trains it through the same entry point as
the PyTorch models (``python -m src.train model=mlp_numpy``).
"""

from src.numpy_nn.mlp import MLP
from src.numpy_nn.modules import (
    CrossEntropyModule,
    LeakyReLUModule,
    LinearModule,
    SoftMaxModule,
    one_hot,
    softmax_cross_entropy_backward,
)
from src.numpy_nn.optim import SGD

__all__ = [
    "MLP",
    "SGD",
    "CrossEntropyModule",
    "LeakyReLUModule",
    "LinearModule",
    "SoftMaxModule",
    "one_hot",
    "softmax_cross_entropy_backward",
]
