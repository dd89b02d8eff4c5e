"""The assignment's VGG-style ConvNet (part 4)."""

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from src.arguments import check_positive_int
from src.models.batchnorm import check_norm, make_norm

# (name, out_channels) for convolutions, (name, None) for 3x3/2 max-pooling, in order: the names
# of the assignment's Table 1, which ends with the linear layer ("linear").
LAYERS: tuple[tuple[str, int | None], ...] = (
    ("conv0", 64), ("maxpool1", None),
    ("conv1", 128), ("maxpool2", None),
    ("conv2_a", 256), ("conv2_b", 256), ("maxpool3", None),
    ("conv3_a", 512), ("conv3_b", 512), ("maxpool4", None),
    ("conv4_a", 512), ("conv4_b", 512), ("maxpool5", None),
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

    A 32x32 input is pooled five times down to 1x1x512, which the linear layer maps to logits;
    other image sizes (``image_size``: height, width) pool to ceil(size / 32) pixels a side, all of
    which the linear layer takes.
    The stages of ``features`` and the final ``linear`` carry the names of the assignment's
    Table 1 (``LAYERS``). ``norm`` is each block's batch norm: ``torch`` (``nn.BatchNorm2d``, the
    assignment's), ``autograd`` or ``manual`` (part 3's, per channel), or ``none``.
    """

    def __init__(
        self,
        n_channels: int = 3,
        n_classes: int = 10,
        norm: str = "torch",
        image_size: Sequence[int] = (32, 32),
    ):
        super().__init__()
        n_in = check_positive_int("n_channels", n_channels)
        n_classes = check_positive_int("n_classes", n_classes)
        check_norm(norm)
        if isinstance(image_size, str) or len(image_size) != 2:
            raise ValueError(f"image_size must be [height, width], got {image_size!r}")
        height, width = (check_positive_int("image_size", n) for n in image_size)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        for name, n_out in LAYERS:
            if n_out is None:
                stages[name] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            else:
                stages[name] = conv_block(n_in, n_out, norm)
                n_in = n_out
        self.features = nn.Sequential(stages)
        # Each 3x3/2 pooling with padding 1 takes a side of n pixels to ceil(n / 2).
        n_pools = sum(1 for _, n_out in LAYERS if n_out is None)
        pixels = math.ceil(height / 2**n_pools) * math.ceil(width / 2**n_pools)
        self.linear = nn.Linear(n_in * pixels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x).flatten(1))
