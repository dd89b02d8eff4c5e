"""The LightningModule of every PyTorch classifier: cross-entropy, the metrics, an optimizer."""

import logging
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.model_summary import summarize
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from src.lit import compat
from src.lit.schedulers import SchedulerFactory

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

#: The network's layers that diagnostics (``src.lit.diagnostics``) report on, in order.
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.LeakyReLU, nn.ReLU)


def logs_this_step(trainer: pl.Trainer | None) -> bool:
    """Whether Lightning hands this training step's logged values to the logger.

    It does every ``trainer.log_every_n_steps`` steps (and when the run stops); a value logged on
    any other step would be computed for nothing. Lightning's own test, so that the project's
    logging and Lightning's cannot drift apart. Without a trainer (a bare call), every step logs.
    """
    return True if trainer is None else compat.should_update_logs(trainer)


class MeanCrossEntropy(MeanMetric):
    """The mean cross-entropy of a classifier's logits over every sample it was updated with."""

    def update(self, logits: Tensor, target: Tensor) -> None:
        super().update(F.cross_entropy(logits.float(), target, reduction="none"))


#: The metrics of every curve and every evaluation, by name: each made for a class count, updated
#: with a batch's logits and labels, and computed to one number. A metric added here is logged as
#: ``train/NAME`` (on logging steps), ``val/NAME`` and ``test/NAME`` (at every validation
#: interval) and ``final_test/NAME`` (the selected checkpoint's test, recorded in run.yaml), and
#: ``src.evaluate`` writes it into ``eval/metrics.yaml``.
METRICS: dict[str, Callable[[int], Metric]] = {
    "acc": lambda num_classes: MulticlassAccuracy(num_classes, average="micro"),
    "loss": lambda num_classes: MeanCrossEntropy(),
}


def eval_metrics(num_classes: int) -> MetricCollection:
    """A fresh set of ``METRICS`` (synchronised across processes when computed)."""
    # No compute groups: they merge metrics whose states happen to match after the first update.
    return MetricCollection(
        {name: make(num_classes) for name, make in METRICS.items()}, compute_groups=False
    )


class Classifier(pl.LightningModule):
    """Trains any ``nn.Module`` that maps a batch of images to class logits.

    Logs every metric of ``METRICS`` on the training batch of each logging step (``train/...``), at
    every validation interval on each evaluation split the data module names (``val/...``,
    ``test/...``), and on the final test of the selected checkpoint (``final_test/...``).

    ``train_metrics`` holds the last logged training metrics (floats).

    ``optimizer`` is a factory that takes the parameters (Hydra's ``_partial_: true``), so the
    optimizer and its settings come from config. ``scheduler``, a factory that takes the optimizer
    (or None: a constant learning rate), sets the learning rate after every optimizer step.
    ``compile_net`` compiles the network with ``torch.compile`` (``compile=true``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int = 10,  # CIFAR-10's: configs saved before classifier.num_classes existed
        scheduler: SchedulerFactory | None = None,
        compile_net: bool = False,
    ):
        super().__init__()
        if compile_net:  # torch.compile, in place: parameter names (checkpoints) stay the model's
            net.compile()
        self.net, self.optimizer_factory = net, optimizer
        self.scheduler_factory = scheduler  # its settings are checked before a run (src.checks)
        self.train_metrics: dict[str, float] = {}
        self.batch_metrics = eval_metrics(num_classes)  # computes train_metrics on one batch
        self.metrics = nn.ModuleDict(
            {split: eval_metrics(num_classes) for split in ("val", "test", "final_test")}
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        # The run's model summary, logged by the classifier (Lightning's ModelSummary callback is
        # off, trainer.enable_model_summary=false): one callback fewer on every step, and the NumPy
        # classifier, whose arrays Lightning cannot count, summarises itself the same way.
        log.info(f"model summary:\n{summarize(self, max_depth=1)}")

    def load_weights(self, checkpoint: dict) -> None:
        """Take the network's weights from a checkpoint read by ``src.checks.load_checkpoint``:
        torch parameters from its ``state_dict``, and what ``on_load_checkpoint`` restores (the
        NumPy MLP's arrays). Raises KeyError, RuntimeError or ValueError if they do not fit."""
        self.load_state_dict(checkpoint["state_dict"])
        self.on_load_checkpoint(checkpoint)

    def check_optimizer(self) -> None:
        """Run the optimizer's and the schedule's own argument checks (e.g. a negative lr, a
        negative warm-up) on a one-element stand-in, so bad settings fail before training."""
        stand_in = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        if self.scheduler_factory is not None:
            self.scheduler_factory(stand_in)

    def check_precision(self, precision: str) -> None:
        """Raise a ValueError that says why if this classifier cannot train in ``precision``
        (Lightning's canonical name, e.g. ``bf16-mixed``): a torch network trains in any."""

    def weight_layers(self) -> list[tuple[Tensor, Tensor | None]]:
        """The weight of each of the network's weight layers (``WEIGHT_LAYERS``: batch norm's scale
        is not one), in order, with its gradient (None before any backward pass), for diagnostics.
        """
        layers = [m for m in self.net.modules() if isinstance(m, WEIGHT_LAYERS)]
        return [(m.weight.detach(), m.weight.grad) for m in layers]

    def watch_activations(self, record: Callable[[int, Tensor], None]) -> Callable[[], None]:
        """Call ``record(i, output)`` with the output of the network's i-th activation layer
        (``ACTIVATIONS``) on every forward pass, until the returned function is called."""
        layers = [m for m in self.net.modules() if isinstance(m, ACTIVATIONS)]
        handles = [
            m.register_forward_hook(lambda _m, _in, out, i=i: record(i, out))
            for i, m in enumerate(layers)
        ]

        def stop() -> None:
            for handle in handles:
                handle.remove()

        return stop

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # Stepped after every optimizer step; Lightning saves its state in checkpoints.
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def scores_and_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The logits (class scores, highest = predicted class) and the mean cross-entropy of a
        batch: what a training step computes."""
        logits = self(x)
        return logits, F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits, loss = self.scores_and_loss(x, y)
        self._log_train(logits, y)
        return loss

    def _log_train(self, logits: Tensor, y: Tensor) -> None:
        """Write this batch's training metrics to the loggers, on logging steps only.

        Straight to the loggers, as Lightning's own learning-rate monitor does, not through
        ``self.log``: its bookkeeping (result collection, metric objects, device moves) cost about
        a millisecond of Python per logging step on a CPU, for numbers read once. Plotted at the
        update's number (1 for the first), like validation "after N updates", so a resumed run
        continues the curves at exactly the step after its checkpoint. The progress bar shows
        ``train_metrics`` (``StepProgressBar``); they are not in ``trainer.callback_metrics``, so
        a callback cannot monitor them (checkpoints and pruning monitor validation metrics).
        """
        trainer = compat.attached_trainer(self)
        if trainer is None or not logs_this_step(trainer):
            return
        with torch.no_grad():  # this batch's values (update + compute: the metrics' forward
            self.batch_metrics.update(logits.detach(), y)  # would also keep running totals)
            values = self.batch_metrics.compute()
        self.batch_metrics.reset()
        # Read back once per logging step (every log_every_n_steps): no device sync on the others.
        numbers = torch.stack([v.float() for v in values.values()]).tolist()
        self.train_metrics = {f"train/{k}": v for k, v in zip(values, numbers, strict=True)}
        rates = self.learning_rates()
        for logger in trainer.loggers:
            logger.log_metrics(self.train_metrics, step=self.global_step + 1)
            # At the number of updates done, as Lightning's LearningRateMonitor plots them (so
            # curves of runs from before this replaced it line up): the rate of the next update.
            logger.log_metrics(rates, step=self.global_step)
            logger.save()

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of the next update, by Lightning's ``LearningRateMonitor``'s names:
        ``lr-<optimizer class>`` (``/pg<i>`` per parameter group where there are several)."""
        rates = {}
        for optimizer in self.trainer.optimizers:
            name, groups = f"lr-{type(optimizer).__name__}", optimizer.param_groups
            for i, group in enumerate(groups):
                rates[name if len(groups) == 1 else f"{name}/pg{i + 1}"] = float(group["lr"])
        return rates

    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        self.metrics[split].update(self(x), y)

    def _log_evaluation(self, splits: Iterable[str]) -> None:
        """Log and reset the metrics of a whole evaluation pass: once per pass, not per batch
        (each ``self.log`` costs Lightning about half a millisecond of Python)."""
        for split in splits:
            metrics = self.metrics[split]
            if not any(metric.update_called for metric in metrics.values()):
                continue  # a split this pass did not evaluate
            values = {f"{split}/{name}": metric.compute() for name, metric in metrics.items()}
            self.log_dict(values, prog_bar=split == "val")
            metrics.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx=0):
        self._evaluate(self.trainer.datamodule.eval_splits[dataloader_idx], batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation(self.trainer.datamodule.eval_splits)
        # Lightning logs validation at the index of the last training step (99 after 100 steps);
        # a logged "step" is taken as the x-axis value, so curves read "after 100 steps".
        self.log("step", float(self.global_step))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("final_test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation(["final_test"])
