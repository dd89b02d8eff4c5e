"""The assignment's multi-layer perceptron (part 2), in PyTorch."""

from collections.abc import Sequence

import torch
from torch import nn

from src.arguments import check_fraction, check_hidden_units, check_non_negative, check_positive_int
from src.models.batchnorm import check_norm, make_norm


class MLP(nn.Module):
    """Linear -> LeakyReLU blocks, then a linear layer to the class scores (logits).

    ``norm`` adds batch normalization between each hidden linear layer and its LeakyReLU:
    ``none`` (the assignment's part 2), ``torch`` (``nn.BatchNorm1d``), or the custom layers of
    part 3, ``autograd`` or ``manual`` (see ``src.models.batchnorm.make_norm``).

    Images are flattened, so any input of shape ``(batch, *)`` with ``n_inputs`` features works.
    An empty ``hidden_units`` gives multinomial logistic regression.
    """

    def __init__(
        self,
        n_inputs: int = 3 * 32 * 32,
        hidden_units: Sequence[int] = (100,),
        n_classes: int = 10,
        neg_slope: float = 0.02,
        dropout: float = 0.0,
        norm: str = "none",
    ):
        super().__init__()
        n_inputs = check_positive_int("n_inputs", n_inputs)
        hidden_units = check_hidden_units(hidden_units)
        n_classes = check_positive_int("n_classes", n_classes)
        neg_slope = check_non_negative("neg_slope", neg_slope)
        dropout = check_fraction("dropout", dropout)
        check_norm(norm)  # also without hidden layers, where no norm layer is made
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [n_inputs, *hidden_units]
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            layers.append(nn.Linear(n_in, n_out))
            if (norm_layer := make_norm(norm, n_out)) is not None:
                layers.append(norm_layer)
            layers.append(nn.LeakyReLU(neg_slope))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
