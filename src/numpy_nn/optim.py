"""Plain mini-batch stochastic gradient descent for the NumPy modules."""

from collections.abc import Iterable

from src.arguments import check_positive


class SGD:
    """``p <- p - lr * dL/dp`` for every parameter of ``modules``, in place.

    ``modules`` are objects with matching ``params`` and ``grads`` dicts of arrays (e.g.
    ``NumpyMLP.parameters()``). The gradients are read at each ``step``, after the backward pass has
    filled them; plain SGD keeps no state of its own.
    """

    def __init__(self, modules: Iterable, lr: float = 2e-3):
        self.modules = list(modules)
        for module in self.modules:
            if not (hasattr(module, "params") and hasattr(module, "grads")):
                raise TypeError(f"SGD needs modules with params and grads, got {module!r}")
        self.lr = check_positive("lr", lr)

    def step(self) -> None:
        """Update every parameter with its current gradient."""
        for module in self.modules:
            for name, param in module.params.items():
                param -= self.lr * module.grads[name]
