"""A small synthetic stand-in for CIFAR-10: images of any shape and class count, made in memory."""

from collections.abc import Sequence

import torch
from torch import Tensor

from src.arguments import check_positive_int
from src.data.datamodule import InMemoryDataModule


class FakeDataModule(InMemoryDataModule):
    """Images of ``input_shape`` (CIFAR's by default): a faint class-specific pattern plus noise.

    For tests and smoke runs on machines without CIFAR-10: a model can learn it well above chance
    within a few dozen steps, and it is the same for the same ``data_seed``.
    """

    def __init__(
        self,
        num_train: int = 1000,
        num_test: int = 500,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        contrast: float = 40.0,
        noise: float = 60.0,
        data_seed: int = 0,
        **kwargs,
    ):
        self.num_train_images = num_train
        super().__init__(**kwargs)
        if isinstance(input_shape, str | bytes) or len(input_shape) != 3:
            raise ValueError(
                f"data.input_shape must be [channels, height, width], got {input_shape!r}"
            )
        self.input_shape = tuple(check_positive_int("data.input_shape", n) for n in input_shape)
        self.num_classes = check_positive_int("data.num_classes", num_classes)
        self.num_test = num_test
        self.contrast, self.noise, self.data_seed = contrast, noise, data_seed

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.data_seed)
        channels, height, width = self.input_shape
        # Coarse 4x4 colour patterns around mid-grey, upsampled: each class a faint smooth picture,
        # buried in pixel noise, so learning it takes some steps (and can visibly fail).
        patterns = torch.rand(self.num_classes, channels, 4, 4, generator=g) - 0.5
        prototypes = 128 + self.contrast * patterns
        prototypes = torch.nn.functional.interpolate(
            prototypes, size=(height, width), mode="bilinear"
        )

        def sample(n: int) -> tuple[Tensor, Tensor]:
            y = torch.randint(self.num_classes, (n,), generator=g)
            x = prototypes[y] + self.noise * torch.randn(n, *self.input_shape, generator=g)
            return x.clamp(0, 255).to(torch.uint8), y

        return *sample(self.num_train_images), *sample(self.num_test)
