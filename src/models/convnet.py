"""The assignment's VGG-style ConvNet (part 4)."""

from collections import OrderedDict

import torch
from torch import nn

from src.models.batchnorm import make_norm

# (name, out_channels) for convolutions, ("maxpool", None) for pooling: the assignment's table.
LAYERS: tuple[tuple[str, int | None], ...] = (
    ("conv1", 64), ("maxpool", None),
    ("conv2", 128), ("maxpool", None),
    ("conv3_a", 256), ("conv3_b", 256), ("maxpool", None),
    ("conv4_a", 512), ("conv4_b", 512), ("maxpool", None),
    ("conv5_a", 512), ("conv5_b", 512), ("maxpool", None),
)  # fmt: skip


def conv_block(n_in: int, n_out: int, norm: str = "torch") -> nn.Sequential:
    """3x3 convolution (stride 1, padding 1) -> BatchNorm -> ReLU.

    ``norm`` picks the batch norm (``make_norm``); ``none`` leaves convolution -> ReLU.
    """
    layers = [nn.Conv2d(n_in, n_out, kernel_size=3, stride=1, padding=1)]
    if (norm_layer := make_norm(norm, n_out, spatial=True)) is not None:
        layers.append(norm_layer)
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """Five VGG stages of 3x3 conv blocks and 3x3/2 max-pooling, then one linear layer.

    A 32x32 input is pooled five times down to 1x1x512, which the linear layer maps to logits.
    ``norm`` is each block's batch norm: ``torch`` (``nn.BatchNorm2d``, the assignment's),
    ``autograd`` or ``manual`` (part 3's, per channel), or ``none``.
    """

    def __init__(self, n_channels: int = 3, n_classes: int = 10, norm: str = "torch"):
        super().__init__()
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        n_in, n_pool = n_channels, 0
        for name, n_out in LAYERS:
            if n_out is None:
                n_pool += 1
                stages[f"maxpool{n_pool}"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            else:
                stages[name] = conv_block(n_in, n_out, norm)
                n_in = n_out
        self.features = nn.Sequential(stages)
        self.classifier = nn.Linear(n_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
