"""The private Lightning and TensorBoard APIs this project uses, in one place.

Each function wraps one private name, so a Lightning upgrade that moves or renames it breaks here,
and only here. Checked against pytorch-lightning 2.6.
"""

import logging
import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n


def set_progress(bar, n: int) -> None:
    """Move a tqdm progress bar to ``n`` and redraw it (Lightning's ``_update_n``)."""
    _update_n(bar, n)


def stop_after_this_step(trainer: pl.Trainer) -> None:
    """Ask the trainer to stop after the current step, as on SIGTERM: it raises
    ``SIGTERMException`` once the step's logs are written. Sets the flag of Lightning's own SIGTERM
    handler (``trainer.received_sigterm`` reads it)."""
    trainer._signal_connector.received_sigterm = True


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer ``module`` is attached to, or None (``module.trainer`` raises instead)."""
    return module._trainer


def should_update_logs(trainer: pl.Trainer) -> bool:
    """Lightning's own test of whether this training step's logged values go to the logger (its
    logger connector's ``should_update_logs``); True where that is not there (another version)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


def tensorboard_file_writer(logger):
    """The event-file writer behind a ``TensorBoardLogger`` (``SummaryWriter._get_file_writer``),
    to write summaries that the public API would duplicate."""
    return logger.experiment._get_file_writer()


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tips ("💡 Tip: ... try installing litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    """Keep out of a run's console and log files what a researcher cannot act on: Lightning's
    advertising tips (logged at INFO through ``pytorch_lightning.utilities.rank_zero``, beside
    notices worth reading), and the deprecation of a torch API that Lightning 2.6 itself calls."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
