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

The classifier names the layers (``Classifier.weight_layers`` and ``watch_activations``, the same
for every classifier): the ``nn.Linear``/``nn.Conv2d`` weights of a torch network in order (batch
norm's scale and shift are not counted) and its ``nn.LeakyReLU``/``nn.ReLU`` outputs; the NumPy
MLP's linear modules and its parameter-free modules, as tensors. So the PyTorch and the NumPy MLP
log the same tags and their curves overlay: layer0 is the first hidden layer in both.

On other steps the callback only checks a flag: activations are watched from the start of a logging
step to its end, and weights are copied only on logging steps (at its start: before the update,
which the NumPy model makes inside its training step).
"""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from torch.utils.tensorboard import summary

from src.lit.classifier import logs_this_step

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


class Diagnostics(pl.Callback):
    """Writes per-layer gradient, weight, update and activation statistics on logging steps.

    Works with every classifier (``Classifier``, ``NumpyClassifier``): it reads the layers through
    their ``weight_layers`` and ``watch_activations``. See the module docstring for the tags.
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
        self._stop_watching: Callable[[], None] | None = None
        self._activations: dict[int, tuple[Tensor, Tensor | None]] = {}  # stats, data kept
        self._before: list[Tensor] = []  # weights before the update

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        self._active = logs_this_step(trainer) and _tensorboard(trainer) is not None
        if not self._active:
            return
        self._histograms = self.histogram_every > 0 and self._n_logged % self.histogram_every == 0
        self._n_logged += 1
        self._activations = {}
        self._stop_watching = pl_module.watch_activations(self._record)
        self._before = [weight.clone() for weight, _ in pl_module.weight_layers()]

    def _record(self, layer: int, out: Tensor) -> None:
        # Stats now: an in-place ReLU's output may be changed by later layers.
        kept = out.detach().flatten().clone() if self._histograms else None
        self._activations[layer] = (activation_stats(out), kept)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        if not self._active:
            return
        self._active = False
        self._stop_watching()
        layers = pl_module.weight_layers()  # after the update, with this step's gradients
        rows = []
        for (after, grad), before in zip(layers, self._before, strict=True):
            grad_norm = torch.zeros((), device=after.device) if grad is None else _norm(grad)
            weight_norm = _norm(before)
            rows.append(torch.stack([grad_norm, weight_norm, _norm(after - before) / weight_norm]))
        recorded = [self._activations[i] for i in sorted(self._activations)]
        stats = [row.float() for row in rows] + [s.float() for s, _ in recorded]
        # One transfer (one device sync) for every scalar of the step.
        values = torch.cat(stats).cpu().tolist() if stats else []
        writer, step = _tensorboard(trainer).experiment, trainer.global_step
        write_scalars(writer, _name_scalars(values, len(rows), len(recorded)), step)
        if self._histograms:
            for i, ((_, grad), before) in enumerate(zip(layers, self._before, strict=True)):
                writer.add_histogram(tag("weights", i), before.cpu(), step, bins=HISTOGRAM_BINS)
                if grad is not None:
                    grad = grad.detach().cpu()
                    writer.add_histogram(tag("grads", i), grad, step, bins=HISTOGRAM_BINS)
            for i, (_, kept) in enumerate(recorded):
                writer.add_histogram(tag("activations", i), kept.cpu(), step, bins=HISTOGRAM_BINS)
        self._activations, self._before = {}, []


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


def _norm(t: Tensor) -> Tensor:
    """The L2 norm of a tensor's entries, on its device."""
    return torch.linalg.vector_norm(t.detach())
