"""Data modules: CIFAR-10 and a synthetic stand-in, both served from in-memory tensors."""

from src.data.batches import TensorBatches
from src.data.cifar10 import CIFAR10DataModule
from src.data.datamodule import DataError, InMemoryDataModule
from src.data.fake import FakeDataModule

__all__ = [
    "CIFAR10DataModule",
    "DataError",
    "FakeDataModule",
    "InMemoryDataModule",
    "TensorBatches",
]
