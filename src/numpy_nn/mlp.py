"""The assignment's multi-layer perceptron (part 1), in NumPy with hand-written backpropagation."""

from collections.abc import Sequence

import numpy as np

from src.arguments import check_hidden_units, check_positive_int
from src.numpy_nn.modules import LeakyReLUModule, LinearModule, SoftMaxModule

DTYPES = ("float32", "float64")


class NumpyMLP:
    """Linear -> LeakyReLU blocks, a linear layer to the class scores, then softmax.

    ``forward`` returns class probabilities; ``backward(dout)`` takes dL/d(probabilities) and runs
    back through every module, filling each Linear module's ``grads``. Training uses the shortcut
    ``backward_from_logits``, which starts after the softmax (``softmax_cross_entropy_backward``).

    Images (batch, channels, height, width) are flattened to (batch, n_inputs). An empty
    ``hidden_units`` gives multinomial logistic regression. The arguments are named as
    ``src.models.MLP``'s, so one config key sets both. ``dtype`` is the parameters' and the
    computation's float type; ``seed`` seeds the weights' initialisation (None: fresh randomness).
    """

    def __init__(
        self,
        n_inputs: int = 3 * 32 * 32,
        hidden_units: Sequence[int] = (100,),
        n_classes: int = 10,
        neg_slope: float = 0.02,
        dtype: str | type | np.dtype = "float64",
        seed: int | None = None,
    ):
        hidden_units = check_hidden_units(hidden_units)
        n_inputs = check_positive_int("n_inputs", n_inputs)
        n_classes = check_positive_int("n_classes", n_classes)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}") from None
        if self.dtype.name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.n_inputs, self.hidden_units, self.n_classes = n_inputs, hidden_units, n_classes
        rng = np.random.default_rng(seed)

        widths = [n_inputs, *hidden_units]
        self.layers: list[LinearModule | LeakyReLUModule] = []
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            self.layers += [LinearModule(n_in, n_out, self.dtype, rng), LeakyReLUModule(neg_slope)]
        self.layers.append(LinearModule(widths[-1], n_classes, self.dtype, rng))
        self.softmax = SoftMaxModule()
        self._input_shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        widths = " -> ".join(str(w) for w in (self.n_inputs, *self.hidden_units, self.n_classes))
        return f"NumpyMLP({widths}, {self.dtype.name})"

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class scores before the softmax, (batch, n_classes)."""
        if x.ndim < 2 or np.prod(x.shape[1:]) != self.n_inputs:
            raise ValueError(f"expected a batch of {self.n_inputs} features each, got {x.shape}")
        self._input_shape = x.shape
        out = np.asarray(x, dtype=self.dtype).reshape(len(x), self.n_inputs)  # views when it can
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, (batch, n_classes)."""
        return self.softmax.forward(self.logits(x))

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """From dL/d(probabilities), fill every parameter's gradient; return dL/dx (x's shape)."""
        return self.backward_from_logits(self.softmax.backward(dout), input_grad)

    def backward_from_logits(self, dlogits: np.ndarray, input_grad: bool = True):
        """From dL/d(logits), fill every parameter's gradient; return dL/dx (x's shape).

        ``input_grad=False`` returns None and skips the first layer's dL/dx, a quarter of the
        arithmetic of a wide first layer: training has no use for the gradient of the images.
        """
        if self._input_shape is None:
            raise RuntimeError("NumpyMLP.backward called before forward")
        dout = dlogits
        for layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        dx = self.layers[0].backward(dout, input_grad=input_grad)
        return None if dx is None else dx.reshape(self._input_shape)

    def parameters(self) -> list[LinearModule]:
        """The modules that hold parameters, each with its ``params`` and ``grads`` dicts."""
        return [layer for layer in self.layers if isinstance(layer, LinearModule)]

    def named_parameters(self) -> dict[str, np.ndarray]:
        """Every parameter array by name (``layers.{index}.{weight|bias}``), not copied."""
        return {
            f"layers.{i}.{name}": value
            for i, layer in enumerate(self.layers)
            if isinstance(layer, LinearModule)
            for name, value in layer.params.items()
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter array, by name: what a checkpoint saves."""
        return {name: value.copy() for name, value in self.named_parameters().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state``'s arrays into the parameters, in place; names and shapes must match."""
        params = self.named_parameters()
        if set(state) != set(params):
            raise ValueError(
                f"state_dict names {sorted(state)} do not match the NumpyMLP's {sorted(params)}"
            )
        for name, value in state.items():
            if np.shape(value) != params[name].shape:
                raise ValueError(
                    f"{name}: shape {np.shape(value)} does not match the NumpyMLP's "
                    f"{params[name].shape}"
                )
        for name, value in state.items():
            params[name][...] = value
