"""The layers of the NumPy MLP, each with a hand-written backward pass (CS231n style).

Rows are samples: every module works on a whole batch at once, caches in ``forward`` what its
``backward`` needs, and its ``backward(dout)`` turns the loss's gradient with respect to its output
into the gradient with respect to its input (and fills ``grads`` for its parameters). The equations
are derived in docs/derivations.md (Part 1); tests/test_numpy_nn.py checks each one numerically.
"""

import numpy as np

from src.arguments import check_non_negative, check_positive_int

#: Standard deviation of the initial weights: the assignment's N(0, 0.0001^2).
WEIGHT_INIT_STD = 1e-4


class LinearModule:
    """Affine map of a batch: ``out = x W^T + b``, with ``x`` of shape (batch, in_features).

    ``params`` holds ``weight`` (out_features, in_features), drawn from N(0, 0.0001^2), and ``bias``
    (out_features,), zeros; ``backward`` fills ``grads`` with arrays of the same shapes.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        dtype: np.dtype | type | str = np.float64,
        rng: np.random.Generator | None = None,
    ):
        in_features = check_positive_int("in_features", in_features)
        out_features = check_positive_int("out_features", out_features)
        rng = np.random.default_rng() if rng is None else rng
        weight = rng.normal(0.0, WEIGHT_INIT_STD, size=(out_features, in_features))
        self.params = {
            "weight": weight.astype(dtype),
            "bias": np.zeros(out_features, dtype=dtype),
        }
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x W^T + b``; reads ``params`` afresh, so replaced or updated arrays take effect."""
        self._x = x  # dL/dW needs the input
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fill ``grads`` from ``dout`` = dL/d(out), (batch, out_features); return dL/dx.

        dL/dx = dout W, dL/dW = dout^T x, dL/db = the sum of dout over the batch
        (docs/derivations.md, eq. 1.17-1.19). ``input_grad=False`` skips dL/dx and returns None:
        a first layer's input is data, whose gradient training never uses.
        """
        if self._x is None:
            raise RuntimeError("LinearModule.backward called before forward")
        self.grads["weight"] = dout.T @ self._x
        self.grads["bias"] = dout.sum(axis=0)
        return dout @ self.params["weight"] if input_grad else None


class LeakyReLUModule:
    """Element-wise ``max(x, 0) + neg_slope * min(x, 0)``.

    At exactly 0 the output is 0 and the derivative is taken as ``neg_slope``, the left one
    (docs/derivations.md, eq. 1.3), as ``torch.nn.LeakyReLU``'s backward does.
    """

    def __init__(self, neg_slope: float):
        self.neg_slope = check_non_negative("neg_slope", neg_slope)
        self._positive: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0  # the derivative is 1 where x > 0, neg_slope elsewhere
        return np.where(self._positive, x, self.neg_slope * x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/dx = dout * (1 if x > 0 else neg_slope) (docs/derivations.md, eq. 1.16)."""
        if self._positive is None:
            raise RuntimeError("LeakyReLUModule.backward called before forward")
        return np.where(self._positive, dout, self.neg_slope * dout)


class SoftMaxModule:
    """Softmax over the classes (the last axis) of each sample."""

    def __init__(self):
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Subtracting each row's maximum leaves the softmax as it is and keeps exp from overflowing.
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self._out = e / e.sum(axis=1, keepdims=True)
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/dx = s * (dout - sum_k dout_k s_k) per sample, in terms of the output s: the
        vector-Jacobian product without forming the Jacobian (docs/derivations.md, eq. 1.14)."""
        if self._out is None:
            raise RuntimeError("SoftMaxModule.backward called before forward")
        s = self._out
        return s * (dout - (dout * s).sum(axis=1, keepdims=True))


class CrossEntropyModule:
    """Cross-entropy of predicted class probabilities ``x`` and one-hot targets ``y``, averaged
    over the batch.

    A probability that underflowed to 0 is read as the smallest positive number of its dtype, so
    the loss and its gradient stay finite (the fused ``softmax_cross_entropy_backward`` never needs
    this).
    """

    @staticmethod
    def _clipped(x: np.ndarray) -> np.ndarray:
        return np.maximum(x, np.finfo(x.dtype).tiny)

    def forward(self, x: np.ndarray, y: np.ndarray) -> float:
        """L = -(1/B) sum_i sum_k y_ik log x_ik (docs/derivations.md, eq. 1.12)."""
        return float(-(y * np.log(self._clipped(x))).sum() / len(x))

    def backward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dL/dx = -(1/B) y / x, element-wise (docs/derivations.md, eq. 1.13)."""
        return -y / (self._clipped(x) * len(x))


def softmax_cross_entropy_backward(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/d(logits) of the mean cross-entropy of ``probs = softmax(logits)``: (probs - y) / B.

    The product of ``CrossEntropyModule.backward`` and ``SoftMaxModule.backward`` collapses to this
    (docs/derivations.md, eq. 1.15): one subtraction, and exact where a probability underflows to 0.
    """
    return (probs - y) / len(probs)


def one_hot(labels: np.ndarray, n_classes: int, dtype: np.dtype | type | str = np.float64):
    """Integer class labels (batch,) -> one-hot targets (batch, n_classes)."""
    targets = np.zeros((len(labels), n_classes), dtype=dtype)
    targets[np.arange(len(labels)), labels] = 1
    return targets
