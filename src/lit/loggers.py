"""The TensorBoard logger of this project's runs."""

import time

from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning import loggers


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger, flushing its event file at most every ``flush_secs``.

    Lightning calls ``save()`` after every ``log_metrics``: every ``log_every_n_steps`` training
    steps, and once more for the learning-rate curve. Each of its saves flushes the event file,
    and waits for the writer thread to write every queued event first: a few tenths of a
    millisecond per step on average on a CPU, for curves nobody reads that often. Here a save
    within ``flush_secs`` of the last flush does nothing; the writer thread still writes events as
    they come, the end of a run flushes everything, and TensorBoard shows a running run at most
    ``flush_secs`` late.
    """

    def __init__(self, *args, flush_secs: float = 10.0, **kwargs):
        # flush_secs also goes to the SummaryWriter: its thread then flushes on that clock too.
        super().__init__(*args, flush_secs=flush_secs, **kwargs)
        self.flush_secs = flush_secs
        self._flushed_at = time.monotonic()

    @rank_zero_only
    def save(self) -> None:
        if time.monotonic() - self._flushed_at >= self.flush_secs:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write everything logged so far to the event file (and ``hparams.yaml``) now."""
        super().save()
        self._flushed_at = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._flushed_at = float("-inf")  # Lightning's finalize saves: that one always flushes
        super().finalize(status)
