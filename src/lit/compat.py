"""The private Lightning and TensorBoard APIs this project uses, in one place.

Each function wraps one private name, so a Lightning upgrade that moves or renames it breaks here,
and only here. Checked against pytorch-lightning 2.6.
"""

import logging
import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


def stop_after_this_step(trainer: pl.Trainer) -> None:
    """Ask the trainer to stop after the current step, as on SIGTERM: it raises
    ``SIGTERMException`` once the step's logs are written. Sets the flag of Lightning's own SIGTERM
    handler (``trainer.received_sigterm`` reads it)."""
    trainer._signal_connector.received_sigterm = True


def save_last_checkpoint(callback: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Have ``callback`` write its last checkpoint (``last.ckpt``) now, unless it wrote a checkpoint
    at this step or may not write now (outside fit, sanity check): ``ModelCheckpoint``'s
    ``_should_skip_saving_checkpoint`` and ``_save_last_checkpoint``."""
    if not callback._should_skip_saving_checkpoint(trainer):
        callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


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
