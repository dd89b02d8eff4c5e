"""A small synthetic stand-in for CIFAR-10: same shapes, made in memory, learnable."""

import torch
from torch import Tensor

from src.data.datamodule import InMemoryDataModule


class FakeDataModule(InMemoryDataModule):
    """CIFAR-shaped images: a faint class-specific pattern plus pixel noise.

    For tests and smoke runs on machines without CIFAR-10: a model can learn it well above chance
    within a few dozen steps, and it is the same for the same ``data_seed``.
    """

    def __init__(
        self,
        num_train: int = 1000,
        num_test: int = 500,
        num_classes: int = 10,
        contrast: float = 40.0,
        noise: float = 60.0,
        data_seed: int = 0,
        **kwargs,
    ):
        self.num_train_images = num_train
        super().__init__(**kwargs)
        self.num_test, self.num_classes = num_test, num_classes
        self.contrast, self.noise, self.data_seed = contrast, noise, data_seed

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.data_seed)
        # Coarse 4x4 colour patterns around mid-grey, upsampled: each class a faint smooth picture,
        # buried in pixel noise, so learning it takes some steps (and can visibly fail).
        patterns = torch.rand(self.num_classes, 3, 4, 4, generator=g) - 0.5
        prototypes = 128 + self.contrast * patterns
        prototypes = torch.nn.functional.interpolate(prototypes, size=(32, 32), mode="bilinear")

        def sample(n: int) -> tuple[Tensor, Tensor]:
            y = torch.randint(self.num_classes, (n,), generator=g)
            x = prototypes[y] + self.noise * torch.randn(n, 3, 32, 32, generator=g)
            return x.clamp(0, 255).to(torch.uint8), y

        return *sample(self.num_train_images), *sample(self.num_test)
