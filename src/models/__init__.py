"""Plain ``nn.Module`` models: they know nothing of Lightning or Hydra."""

from src.models.convnet import ConvNet
from src.models.mlp import MLP

__all__ = ["MLP", "ConvNet"]
