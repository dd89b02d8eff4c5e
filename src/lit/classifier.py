"""The one LightningModule for every PyTorch classifier: cross-entropy, accuracy, an optimizer."""

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from src.lit import compat
from src.lit.schedulers import SchedulerFactory

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def logs_this_step(trainer: pl.Trainer | None) -> bool:
    """Whether Lightning hands this training step's logged values to the logger.

    It does every ``trainer.log_every_n_steps`` steps (and when the run stops); a value logged on
    any other step would be computed for nothing. Lightning's own test, so that the project's
    logging and Lightning's cannot drift apart. Without a trainer (a bare call), every step logs.
    """
    return True if trainer is None else compat.should_update_logs(trainer)


def eval_metrics(num_classes: int) -> MetricCollection:
    """Accuracy and mean loss over a whole evaluation pass (synchronised across processes)."""
    return MetricCollection(
        {"acc": MulticlassAccuracy(num_classes, average="micro"), "loss": MeanMetric()}
    )


class Classifier(pl.LightningModule):
    """Trains any ``nn.Module`` that maps a batch of images to class logits.

    Logs ``train/loss`` and ``train/acc`` per step, and at every validation interval the loss and
    accuracy of each evaluation split the data module names (``val/...``, ``test/...``). The final
    test of the selected checkpoint logs ``final_test/...``.

    ``train_metrics`` holds the last logged training loss and accuracy (floats).

    ``optimizer`` is a factory that takes the parameters (Hydra's ``_partial_: true``), so the
    optimizer and its settings come from config. ``scheduler``, a factory that takes the optimizer
    (or None: a constant learning rate), sets the learning rate after every optimizer step.
    ``compile_net`` compiles the network with ``torch.compile`` (``compile=true``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        compile_net: bool = False,
    ):
        super().__init__()
        if compile_net:  # torch.compile, in place: parameter names (checkpoints) stay the model's
            net.compile()
        self.net, self.optimizer_factory = net, optimizer
        self.scheduler_factory = scheduler  # its settings are checked before a run (src.checks)
        self.train_metrics: dict[str, float] = {}
        self.metrics = nn.ModuleDict(
            {split: eval_metrics(num_classes) for split in ("val", "test", "final_test")}
        )

    #: The network computes in torch (autocast, torch.compile and schedules apply to it).
    computes_in_torch = True

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def check_optimizer(self) -> None:
        """Run the optimizer's and the schedule's own argument checks (e.g. a negative lr, a
        negative warm-up) on a one-element stand-in, so bad settings fail before training."""
        stand_in = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        if self.scheduler_factory is not None:
            self.scheduler_factory(stand_in)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # Stepped after every optimizer step; Lightning saves its state in checkpoints.
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def scores_and_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Class scores (highest = predicted class) and the mean cross-entropy of a batch."""
        logits = self(x)
        return logits, F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits, loss = self.scores_and_loss(x, y)
        self._log_train(logits, y, loss)
        return loss

    def _log_train(self, scores: Tensor, y: Tensor, loss: Tensor | float) -> None:
        """Write this step's training loss and accuracy to the loggers, on logging steps only.

        Straight to the loggers, as Lightning's own learning-rate monitor does, not through
        ``self.log``: its bookkeeping (result collection, metric objects, device moves) cost about
        a millisecond of Python per logging step on a CPU, for two numbers read once. Plotted at
        the update's number (1 for the first), like validation "after N updates", so a resumed run
        continues the curves at exactly the step after its checkpoint. The progress bar shows
        ``train_metrics`` (``StepProgressBar``); they are not in ``trainer.callback_metrics``, so
        a callback cannot monitor them (checkpoints and pruning monitor validation metrics).
        """
        trainer = compat.attached_trainer(self)
        if trainer is None or not logs_this_step(trainer):
            return
        acc = (scores.argmax(dim=1) == y).float().mean()
        # Read back once per logging step (every log_every_n_steps): no device sync on the others.
        loss = loss.item() if isinstance(loss, Tensor) else float(loss)
        self.train_metrics = {"train/loss": loss, "train/acc": acc.item()}
        for logger in trainer.loggers:
            logger.log_metrics(self.train_metrics, step=self.global_step + 1)
            logger.save()

    def _evaluate(self, split: str, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        scores, loss = self.scores_and_loss(x, y)
        metrics = self.metrics[split]
        metrics["acc"].update(scores, y)
        metrics["loss"].update(loss, weight=len(y))

    def _log_evaluation(self, splits: Iterable[str]) -> None:
        """Log and reset the metrics of a whole evaluation pass: once per pass, not per batch
        (each ``self.log`` costs Lightning about half a millisecond of Python)."""
        for split in splits:
            metrics = self.metrics[split]
            if not metrics["loss"].update_called:
                continue
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
