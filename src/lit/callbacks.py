"""Lightning callbacks of this project."""

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n


class StepProgressBar(TQDMProgressBar):
    """One training bar over all ``max_steps``: runs here count steps, and epochs are incidental.

    Lightning's own bar restarts every epoch and shows an epoch count that never ends (``max_epochs
    = -1``); this one shows ``step/max_steps``, the time left, and the latest metrics.
    """

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.initial = trainer.global_step  # a resumed run continues its bar
        bar.set_description("train")

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # no reset at epoch boundaries

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        bar, step = self.train_progress_bar, trainer.global_step
        if self._should_update(step, bar.total):
            _update_n(bar, step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))
