"""LightningModules: one per way of training (autograd here; hand-written NumPy later)."""

from src.lit.callbacks import StepProgressBar
from src.lit.classifier import Classifier

__all__ = ["Classifier", "StepProgressBar"]
