"""The LightningModule of the NumPy MLP: hand-written backward pass and SGD, no autograd."""

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.lit.classifier import Classifier
from src.numpy_nn import SGD, CrossEntropyModule, NumpyMLP, one_hot, train_step

log = logging.getLogger(__name__)

# Lightning warns that a fit with no torch optimizer "will run with no optimizer": here it runs with
# the NumPy one, so the warning would only mislead.
warnings.filterwarnings("ignore", message=r".*configure_optimizers. returned .None.")

#: Where a checkpoint keeps the NumPy parameters (as tensors: they load with ``weights_only``).
CHECKPOINT_KEY = "numpy_state_dict"


def to_numpy(t: Tensor) -> np.ndarray:
    """A CPU tensor's memory as a NumPy array: no copy (a tensor elsewhere is copied over first)."""
    return t.detach().cpu().numpy()


class NumpyClassifier(Classifier):
    """Trains a NumPy network (``src.numpy_nn.NumpyMLP``) by manual optimisation.

    Lightning runs everything around the network as for ``Classifier``: batches, step counting,
    validation, the same metric names, checkpoints, the progress bar and the final test. Each
    training step is ``src.numpy_nn.train_step``: the NumPy forward pass, the fused softmax +
    cross-entropy gradient, the backward pass and a NumPy SGD update. Batches arrive as CPU
    tensors and are read as arrays.

    ``optimizer`` is a factory that takes ``net.parameters()`` (``src.numpy_nn.SGD`` with Hydra's
    ``_partial_: true``). Checkpoints hold the network's parameters under ``"numpy_state_dict"``.
    """

    def __init__(
        self,
        net: NumpyMLP,
        optimizer: Callable[[list], SGD],
        num_classes: int = 10,  # as Classifier's
        scheduler: None = None,
        compile_net: bool = False,
    ):
        if compile_net:
            raise ValueError(
                "compile=true: the NumPy model is not a torch module (nothing to compile)"
            )
        if scheduler is not None:
            raise ValueError(
                "the NumPy MLP trains with the assignment's constant learning rate (its NumPy SGD "
                "has no schedules): use scheduler=none"
            )
        super().__init__(net, optimizer, num_classes)
        self.automatic_optimization = False
        self.numpy_optimizer = optimizer(net.parameters())
        self.criterion = CrossEntropyModule()

    def check_optimizer(self) -> None:
        pass  # the NumPy SGD checked its settings when it was built, in __init__

    def check_precision(self, precision: str) -> None:
        if precision != "32-true":
            raise ValueError(
                f"trainer.precision={precision}: the NumPy model computes in NumPy, in its own "
                "model.dtype; mixed precision is for the PyTorch models (use trainer.precision=32)"
            )

    def weight_layers(self) -> list[tuple[Tensor, Tensor | None]]:
        # The arrays as tensors (no copy): what Classifier.weight_layers gives of a torch network.
        return [
            (torch.from_numpy(m.params["weight"]), torch.from_numpy(m.grads["weight"]))
            for m in self.net.parameters()
        ]

    def watch_activations(self, record: Callable[[int, Tensor], None]) -> Callable[[], None]:
        """As ``Classifier.watch_activations``: the activation layers are the MLP's modules without
        parameters, whose ``forward`` is wrapped until the returned function is called."""
        layers = [m for m in self.net.layers if not hasattr(m, "params")]
        for i, module in enumerate(layers):
            module.forward = _recording(module.forward, i, record)

        def stop() -> None:
            for module in layers:
                del module.forward  # the class's own forward again

        return stop

    def setup(self, stage: str) -> None:
        # NumPy computes this model, in its BLAS threads. Torch only gathers the batches, but its
        # OpenMP threads, once woken, spin-wait for more work on the same cores as NumPy's: on the
        # 2-core machine a step took 3.4x its bare loop's CPU time (docs/benchmark.md). So torch
        # runs on one thread while this model trains or evaluates, and gets its threads back after.
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def teardown(self, stage: str) -> None:
        torch.set_num_threads(getattr(self, "_torch_threads", torch.get_num_threads()))

    def configure_optimizers(self) -> None:
        # Nothing here for torch to optimise; Lightning then stands in a no-op optimizer, which
        # training_step steps to count its updates (see there).
        return None

    def learning_rates(self) -> dict[str, float]:
        # Named as the torch SGD's rate is: the NumPy SGD's is the same curve.
        return {"lr-SGD": float(self.numpy_optimizer.lr)}

    def on_fit_start(self) -> None:
        # Lightning's model summary counts torch parameters only, and shows none here.
        n = sum(a.size for a in self.net.named_parameters().values())
        lr = self.numpy_optimizer.lr
        log.info(f"NumPy {self.net}: {n:,} parameters, trained by NumPy SGD with lr {lr:g}")

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of a batch of images, as every classifier returns: the log of the NumPy
        MLP's probabilities (clipped at the dtype's smallest positive number, as its loss is)."""
        return _log(self.net.forward(to_numpy(x)))

    def scores_and_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The logits and the mean cross-entropy of a batch, computed in NumPy."""
        probs = self.net.forward(to_numpy(x))
        loss = self.criterion.forward(probs, one_hot(to_numpy(y), self.net.n_classes, probs.dtype))
        return _log(probs), torch.tensor(loss)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, probs = train_step(self.net, self.numpy_optimizer, to_numpy(x), to_numpy(y))
        self._log_train(_log(probs), y)  # as Classifier: before the step counts
        # Lightning counts training steps (global_step: max_steps, validation and checkpoint
        # intervals) by optimizer steps; with no torch optimizer it holds a no-op stand-in, so
        # stepping that counts this update.
        self.optimizers().step()
        return torch.tensor(loss)  # for callbacks that watch the loss; Lightning does nothing else

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Tensors share the arrays' dtype and values, and load back without unpickling NumPy.
        state = self.net.state_dict()
        checkpoint[CHECKPOINT_KEY] = {name: torch.from_numpy(a) for name, a in state.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(f"the checkpoint has no {CHECKPOINT_KEY!r}: not a NumpyClassifier's")
        self.net.load_state_dict({k: to_numpy(v) for k, v in checkpoint[CHECKPOINT_KEY].items()})


def _log(probs: np.ndarray) -> Tensor:
    """Logits of NumPy class probabilities: their log, clipped at the dtype's smallest positive
    number (as the NumPy cross-entropy clips)."""
    probs = torch.from_numpy(probs)
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


def _recording(
    forward: Callable[[np.ndarray], np.ndarray], index: int, record: Callable[[int, Tensor], None]
) -> Callable[[np.ndarray], np.ndarray]:
    """``forward`` that also hands its output, as a tensor (no copy), to ``record``."""

    def recorded(x: np.ndarray) -> np.ndarray:
        out = forward(x)
        record(index, torch.from_numpy(out))
        return out

    return recorded
