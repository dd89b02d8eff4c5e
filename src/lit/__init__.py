"""The Lightning side: one LightningModule per way of training (autograd, hand-written NumPy),
the callbacks, and the logger."""

from src.lit.callbacks import StepProgressBar
from src.lit.classifier import Classifier
from src.lit.numpy_classifier import NumpyClassifier as NumpyClassifier

__all__ = ["Classifier", "StepProgressBar"]
