"""LightningModules: one per way of training (autograd here; hand-written NumPy later)."""

from src.lit.callbacks import StepProgressBar
from src.lit.classifier import Classifier
from src.lit.numpy_classifier import NumpyClassifier as NumpyClassifier

__all__ = ["Classifier", "StepProgressBar"]
