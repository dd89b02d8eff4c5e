"""Per-layer training diagnostics in TensorBoard: backpropagation at work, one switch away.

``python -m src.train callbacks=diagnostics`` adds the ``Diagnostics`` callback. At every logging
step (``trainer.log_every_n_steps``, the steps on which Lightning writes ``train/loss``) it writes,
for each layer, under the tags

- ``diagnostics/grad_norm/layer{i}``: the L2 norm of the i-th weight layer's weight gradient;
- ``diagnostics/weight_norm/layer{i}``: the L2 norm of its weights (before the update);
- ``diagnostics/update_ratio/layer{i}``: ||W_after - W_before|| / ||W_before|| of one update;
- ``diagnostics/activation_mean/layer{i}``, ``diagnostics/activation_std/layer{i}``: the mean and
  standard deviation of the i-th activation layer's (LeakyReLU/ReLU) outputs on the batch;
- ``diagnostics/dead_fraction/layer{i}``: the fraction of its units never positive on the batch
  (a unit is a feature of an MLP, a channel of a ConvNet, over the batch and the pixels);

and every ``histogram_every``-th logging step (default 20) the 64-bin histograms
``diagnostics/weights/layer{i}``, ``diagnostics/grads/layer{i}`` and
``diagnostics/activations/layer{i}``.

Weight layers are the ``nn.Linear``/``nn.Conv2d`` modules of a torch network in order (batch norm's
scale and shift are not counted), or the modules with a ``weight`` parameter of the NumPy MLP's
``layers``; activation layers are its ``nn.LeakyReLU``/``nn.ReLU`` modules, or the NumPy MLP's
parameter-free modules. So the PyTorch and the NumPy MLP log the same tags and their curves overlay:
layer0 is the first hidden layer in both.

On other steps the callback only checks a flag: hooks on the activations are registered at the start
of a logging step and removed at its end, and weights are copied only on logging steps.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor, nn
from torch.utils.tensorboard import summary

from src.lit.classifier import logs_this_step

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.LeakyReLU, nn.ReLU)
#: Scalars per weight layer and per activation layer, in the order they are stacked.
WEIGHT_STATS = ("grad_norm", "weight_norm", "update_ratio")
ACTIVATION_STATS = ("activation_mean", "activation_std", "dead_fraction")
#: Bins of every histogram: a fixed count costs a fifth of TensorBoard's default ("tensorflow",
#: ~100 ms for the MLP's 3072x100 weights on a busy CPU, vs ~18 ms).
HISTOGRAM_BINS = 64


def tag(stat: str, layer: int) -> str:
    """The TensorBoard tag of one statistic of one layer, e.g. ``diagnostics/grad_norm/layer0``."""
    return f"diagnostics/{stat}/layer{layer}"


def activation_stats(out: Tensor) -> Tensor:
    """Mean, standard deviation and dead-unit fraction of a batch of activations, one tensor.

    A unit is dimension 1 (a feature, or a channel); it is dead on this batch if it is positive
    for no sample (and no pixel). Computed on the device: nothing is synchronised here.
    """
    out = out.detach()
    others = [d for d in range(out.dim()) if d != 1]
    alive = (out > 0).amax(dim=others)
    dead = 1.0 - alive.float().mean()
    std, mean = torch.std_mean(out.float(), correction=0)  # as NumPy's std
    return torch.stack([mean, std, dead])


def numpy_activation_stats(out: np.ndarray) -> np.ndarray:
    """``activation_stats`` of a NumPy batch (batch, features)."""
    others = tuple(d for d in range(out.ndim) if d != 1)
    dead = 1.0 - (out > 0).any(axis=others).mean()
    return np.array([out.mean(), out.std(), dead], dtype=np.float64)


class Diagnostics(pl.Callback):
    """Writes per-layer gradient, weight, update and activation statistics on logging steps.

    Works with any ``Classifier`` whose ``net`` is a torch module and with ``NumpyClassifier``'s
    NumPy MLP (its hand-written gradients). See the module docstring for the tags.
    ``histogram_every``: histograms on every this-many-th logging step (0: never); they cost more
    than the scalars (they copy every weight, gradient and activation to the CPU).
    """

    def __init__(self, histogram_every: int = 20):
        bad = isinstance(histogram_every, bool) or not isinstance(histogram_every, int)
        if bad or histogram_every < 0:
            raise ValueError(f"histogram_every must be an integer >= 0, got {histogram_every!r}")
        self.histogram_every = histogram_every
        self._active = False
        self._histograms = False
        self._n_logged = 0
        self._undo: list[Callable[[], None]] = []  # removes this step's hooks
        self._activations: list[Any] = []  # per activation layer: stats (and, for histograms, data)
        self._before: list[Any] = []  # weights before the update
        self._grads: list[Any] = []  # gradient norms (torch: taken before the optimizer step)

    # ---------------------------------------------------------------- the steps
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        self._active = logs_this_step(trainer) and _tensorboard(trainer) is not None
        if not self._active:
            return
        self._histograms = self.histogram_every > 0 and self._n_logged % self.histogram_every == 0
        self._n_logged += 1
        net = pl_module.net
        if isinstance(net, nn.Module):
            self._hook_torch(net)
        else:
            self._hook_numpy(net)
            # The NumPy step updates the weights inside training_step: copy them before it.
            self._before = [w.copy() for w in _numpy_weights(net)]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_):
        if not self._active:
            return
        net = pl_module.net
        if not isinstance(net, nn.Module):
            return
        # Gradients are complete here and the weights not yet updated (after any gradient
        # clipping Lightning does, which comes before this hook).
        layers = _torch_weight_layers(net)
        self._grads = [_grad_of(m.weight) for m in layers]
        self._before = [m.weight.detach().clone() for m in layers]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        if not self._active:
            return
        self._active = False
        for undo in self._undo:
            undo()
        self._undo = []
        writer, step = _tensorboard(trainer).experiment, trainer.global_step
        net = pl_module.net
        if isinstance(net, nn.Module):
            scalars, histograms = self._torch_values(net)
        else:
            scalars, histograms = self._numpy_values(net)
        write_scalars(writer, scalars, step)
        for name, values in histograms.items():
            writer.add_histogram(name, values, step, bins=HISTOGRAM_BINS)
        self._activations, self._before, self._grads = [], [], []

    # ---------------------------------------------------------------- torch networks
    def _hook_torch(self, net: nn.Module) -> None:
        self._activations = []
        for module in net.modules():
            if isinstance(module, ACTIVATIONS):
                slot = len(self._activations)
                self._activations.append(None)
                handle = module.register_forward_hook(self._torch_recorder(slot))
                self._undo.append(handle.remove)

    def _torch_recorder(self, slot: int):
        def record(module: nn.Module, inputs: Any, out: Tensor) -> None:
            # Stats now: an in-place ReLU's output may be changed by later layers.
            kept = out.detach().flatten().clone() if self._histograms else None
            self._activations[slot] = (activation_stats(out), kept)

        return record

    def _torch_values(self, net: nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
        layers = _torch_weight_layers(net)
        if not self._before:  # no optimizer step on this batch (e.g. skipped): nothing to show
            return {}, {}
        rows = []
        for grad, before, module in zip(self._grads, self._before, layers, strict=True):
            after = module.weight.detach()
            weight_norm = torch.linalg.vector_norm(before)
            update = torch.linalg.vector_norm(after - before) / weight_norm
            rows.append(torch.stack([grad, weight_norm, update]).float())
        recorded = [a for a in self._activations if a is not None]
        acts = [stats for stats, _ in recorded]
        # One transfer (one device sync) for every scalar of the step.
        values = torch.cat([*rows, *acts]).cpu().tolist() if rows or acts else []
        scalars = _name_scalars(values, len(rows), len(acts))
        histograms: dict[str, Any] = {}
        if self._histograms:
            for i, (module, before) in enumerate(zip(layers, self._before, strict=True)):
                histograms[tag("weights", i)] = before.cpu()
                if module.weight.grad is not None:
                    histograms[tag("grads", i)] = module.weight.grad.detach().cpu()
            for i, (_, kept) in enumerate(recorded):
                histograms[tag("activations", i)] = kept.cpu()
        return scalars, histograms

    # ---------------------------------------------------------------- the NumPy MLP
    def _hook_numpy(self, net: Any) -> None:
        """Wrap each activation module's ``forward`` for this step (a NumPy 'forward hook')."""
        self._activations = []
        for module in _numpy_activations(net):
            slot = len(self._activations)
            self._activations.append(None)
            module.forward = self._numpy_recorder(module.forward, slot)
            self._undo.append(lambda m=module: m.__dict__.pop("forward", None))

    def _numpy_recorder(self, forward: Callable[[np.ndarray], np.ndarray], slot: int):
        def record(x: np.ndarray) -> np.ndarray:
            out = forward(x)
            kept = out.copy() if self._histograms else None
            self._activations[slot] = (numpy_activation_stats(out), kept)
            return out

        return record

    def _numpy_values(self, net: Any) -> tuple[dict[str, float], dict[str, Any]]:
        modules = _numpy_weight_modules(net)
        rows = []
        for module, before in zip(modules, self._before, strict=True):
            after, grad = module.params["weight"], module.grads["weight"]
            weight_norm = _norm(before)
            update = _norm(after - before) / weight_norm if weight_norm > 0 else float("nan")
            rows.append([_norm(grad), weight_norm, update])
        recorded = [a for a in self._activations if a is not None]
        values = [v for row in rows for v in row] + [float(v) for s, _ in recorded for v in s]
        scalars = _name_scalars(values, len(rows), len(recorded))
        histograms: dict[str, Any] = {}
        if self._histograms:
            for i, (module, before) in enumerate(zip(modules, self._before, strict=True)):
                histograms[tag("weights", i)] = before
                histograms[tag("grads", i)] = module.grads["weight"]
            for i, (_, kept) in enumerate(recorded):
                histograms[tag("activations", i)] = kept
        return scalars, histograms


def write_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    """Write every scalar of a step as one TensorBoard event: one record written, not one per tag
    (``add_scalar`` costs about 0.1-0.3 ms each on a CPU, a third of the callback's cost)."""
    file_writer = getattr(writer, "file_writer", None)  # torch's SummaryWriter; else one by one
    if file_writer is None:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
        return
    values = [v for name, value in scalars.items() for v in summary.scalar(name, value).value]
    file_writer.add_summary(Summary(value=values), step)


def _name_scalars(values: list[float], n_weight: int, n_act: int) -> dict[str, float]:
    """Tags for the flat list ``[grad, weight, update] * n_weight + [mean, std, dead] * n_act``."""
    names = [tag(s, i) for i in range(n_weight) for s in WEIGHT_STATS]
    names += [tag(s, i) for i in range(n_act) for s in ACTIVATION_STATS]
    return dict(zip(names, values, strict=True))


def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
    """The run's TensorBoard logger, if it has one (diagnostics are written to it directly)."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def _torch_weight_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]


def _grad_of(weight: Tensor) -> Tensor:
    if weight.grad is None:
        return torch.zeros((), device=weight.device)
    return torch.linalg.vector_norm(weight.grad.detach())


def _numpy_weight_modules(net: Any) -> list[Any]:
    """The NumPy network's modules with a weight (``params["weight"]`` and its ``grads``)."""
    return [m for m in net.layers if "weight" in getattr(m, "params", {})]


def _numpy_activations(net: Any) -> list[Any]:
    """The NumPy network's modules without parameters between its weight layers: activations."""
    return [m for m in net.layers if not hasattr(m, "params")]


def _numpy_weights(net: Any) -> list[np.ndarray]:
    return [m.params["weight"] for m in _numpy_weight_modules(net)]


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(a.ravel().astype(np.float64, copy=False)))
