"""The loggers a run can write to (``conf/logger/``): TensorBoard, CSV, MLflow and W&B, each a
Lightning logger with what this project needs of it (throttled writes, resume without repeated
steps). Which loggers a run has, and what they get, is ``src.lit.tracking``'s.
"""

import csv
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning import loggers
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from tensorboard.compat.proto.summary_pb2 import Summary

from src.lit import compat

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# The loggers
# ------------------------------------------------------------------------------------------------


class ThrottledSave:
    """Lightning calls a logger's ``save()`` after every ``log_metrics``; this makes it write at
    most every ``flush_secs`` (``flush()`` writes now). A subclass says how it writes
    (``_write``) and calls ``_start_clock`` in its ``__init__``."""

    def _start_clock(self, flush_secs: float) -> None:
        self.flush_secs = flush_secs
        self._flushed_at = time.monotonic()

    def _write(self) -> None:
        raise NotImplementedError

    @rank_zero_only
    def save(self) -> None:
        if time.monotonic() - self._flushed_at >= self.flush_secs:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write everything logged so far now."""
        self._write()
        self._flushed_at = time.monotonic()


class TensorBoardLogger(ThrottledSave, loggers.TensorBoardLogger):
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
        self._start_clock(flush_secs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """As Lightning's, but the scalars of one call go into one event: Lightning writes an
        event per scalar (``SummaryWriter.add_scalar``), about 70 µs of Python each on a CPU, and
        a logging step logs three (docs/benchmark.md). The event file reads back the same."""
        if self._prefix or any(isinstance(v, Mapping) for v in metrics.values()):
            return super().log_metrics(metrics, step)  # prefixed or grouped: Lightning's way
        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
        compat.tensorboard_file_writer(self).add_summary(Summary(value=values), step)

    def _write(self) -> None:
        loggers.TensorBoardLogger.save(self)  # the event file and hparams.yaml

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._flushed_at = float("-inf")  # Lightning's finalize saves: that one always flushes
        super().finalize(status)


class _ContinuedCSVWriter(ExperimentWriter):
    """Lightning's ``metrics.csv`` writer that, from ``purge_step`` on, continues the file of an
    earlier start in the same folder instead of deleting it (Lightning's own writer deletes it)."""

    def __init__(self, log_dir: str, purge_step: int | None):
        self.purge_step = purge_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not self.purge_step or not path.is_file():
            super()._check_log_dir_exists()
            return
        # The rows the earlier start logged before purge_step; those after its last checkpoint
        # are logged again by this start.
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            fields = list(reader.fieldnames or [])
            kept = [row for row in reader if _csv_step(row) < self.purge_step]
        self.metrics_keys = fields
        self._write(kept)

    def save(self) -> None:
        # A value this start logs at a step before purge_step (the learning rate is logged
        # as the rate of the next step, so at the checkpoint's step) replaces the same values
        # the earlier start logged there: no step appears twice.
        again = {
            (m["step"], frozenset(m))
            for m in self.metrics
            if self.purge_step and m["step"] < self.purge_step
        }
        if again and Path(self.metrics_file_path).is_file():
            with open(self.metrics_file_path, newline="") as file:
                rows = list(csv.DictReader(file))
            self._write([r for r in rows if (_csv_step(r), _csv_keys(r)) not in again])
        super().save()

    def _write(self, rows: list[dict[str, str]]) -> None:
        with open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


def _csv_step(row: Mapping[str, str]) -> int:
    return int(float(row["step"]))


def _csv_keys(row: Mapping[str, str]) -> frozenset[str]:
    return frozenset(k for k, v in row.items() if v != "")


class CSVLogger(loggers.CSVLogger):
    """Lightning's CSV logger (``metrics.csv``, ``hparams.yaml``), which a resumed run continues.

    ``purge_step``: as TensorBoard's, the step from which the rows of an earlier start in this
    folder are dropped (it logged them after its last checkpoint; this start logs them again).
    Lightning's own CSV logger would delete the earlier start's file altogether.
    """

    def __init__(self, *args, purge_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.purge_step = purge_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedCSVWriter(self.log_dir, self.purge_step)
        return self._experiment


class MLFlowLogger(ThrottledSave, loggers.MLFlowLogger):
    """Lightning's MLflow logger, writing its points at most every ``flush_secs``, and whose
    parameters may be logged again by a resumed run.

    Lightning's logger writes every ``log_metrics`` call to the tracking store at once: with the
    default SQLite store that is a transaction per call, 7-50 ms per logging step on a busy CPU
    machine (docs/loggers.md). Here the points wait in memory and go in one batch when a save
    comes ``flush_secs`` after the last write, and at the end of the run (``finalize``); MLflow
    shows a running run at most ``flush_secs`` late.

    MLflow refuses to change a parameter a run has logged. A resumed run logs the same ones
    again; one that its overrides changed (e.g. more ``trainer.max_steps``) keeps its first
    value in MLflow, with a warning. A parameter whose name is also the folder of others (the
    choice ``model`` beside ``model/hidden_units``) is named ``model/choice`` here: MLflow's file
    store keeps each parameter in a file of that name.
    """

    def __init__(self, *args, flush_secs: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._start_clock(flush_secs)
        self._pending: list = []  # mlflow.entities.Metric, not written yet

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now_ms, step or 0) for k, v in metrics.items()]

    def _write(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):  # MLflow takes at most 1000 per batch
            batch = pending[start : start + 1000]
            self.experiment.log_batch(self.run_id, metrics=batch, **self._log_batch_kwargs)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._initialized:
            self.flush()
        super().finalize(status)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        folders = {k.rsplit("/", i)[0] for k in params for i in range(1, k.count("/") + 1)}
        params = {f"{k}/choice" if k in folders else k: v for k, v in params.items()}
        logged = self.experiment.get_run(self.run_id).data.params
        changed = [k for k, v in params.items() if k in logged and logged[k] != str(v)[:250]]
        if changed:
            log.warning(
                "MLflow keeps a run's first parameters: %s stay as first logged",
                ", ".join(f"{k}={logged[k]}" for k in changed),
            )
        super().log_hyperparams({k: v for k, v in params.items() if k not in logged})


class WandbLogger(loggers.WandbLogger):
    """Lightning's W&B logger whose run ends with the training run (``finish``).

    Lightning leaves the W&B run open after ``fit`` (the final test and the hyperparameters come
    after it); a second run in the same process (a sweep's next job) would otherwise log into it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]  # W&B warns about the setting even when unset

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status != "success":
            self.finish(exit_code=1)

    @rank_zero_only
    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run (offline: close its files, for ``wandb sync``)."""
        if self._experiment is not None:
            self._experiment.finish(exit_code=exit_code)
            self._experiment = None
