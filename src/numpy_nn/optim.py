"""Plain mini-batch stochastic gradient descent for the NumPy modules."""

from collections.abc import Iterable


class SGD:
    """``p <- p - lr * dL/dp`` for every parameter of ``modules``, in place.

    ``modules`` are objects with matching ``params`` and ``grads`` dicts of arrays (e.g.
    ``MLP.parameters()``). The gradients are read at each ``step``, after the backward pass has
    filled them; plain SGD keeps no state of its own.
    """

    def __init__(self, modules: Iterable, lr: float = 2e-3):
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.modules = list(modules)
        for module in self.modules:
            if not (hasattr(module, "params") and hasattr(module, "grads")):
                raise TypeError(f"SGD needs modules with params and grads, got {module!r}")
        self.lr = float(lr)

    def step(self) -> None:
        """Update every parameter with its current gradient."""
        for module in self.modules:
            for name, param in module.params.items():
                param -= self.lr * module.grads[name]
