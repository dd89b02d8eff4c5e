"""Report a sweep job's validation metric to its Optuna trial, and stop when the pruner says so.

The Optuna sweeper (``hydra_plugins/dl_optuna_sweeper``) adds this callback to each trial's job as
``+callbacks.optuna_trial``. The job reaches its trial through the study's storage, so it works in
any process or on any machine that can open the storage. A pruned run stops cleanly after its
validation: its checkpoints, TensorBoard curves and ``run.yaml`` (``pruned_at_step``) are kept.
"""

import logging
import time
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class ReportToTrial(pl.Callback):
    """After each validation, ``trial.report(monitor value, step)``; stop if ``should_prune()``."""

    def __init__(self, storage: str, study_name: str, trial_number: int, monitor: str,
                 run_dir: str | None = None):  # fmt: skip
        self.storage_url, self.study_name, self.number = storage, study_name, trial_number
        self.monitor, self.run_dir = monitor, run_dir
        self.trial = None
        self.pruned_at_step: int | None = None
        self.report_s = 0.0  # seconds spent reaching the study: the job's share of the overhead
        self.fit_start = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        import optuna

        from hydra_plugins.dl_optuna_sweeper.study import make_pruner, open_storage, trial_id

        tick = time.perf_counter()
        storage = open_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self.study_name)
        attrs = storage.get_study_user_attrs(study_id)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            pruner=make_pruner(attrs.get("pruner_spec", "none")),
        )
        number_id = trial_id(storage, self.study_name, self.number)
        if storage.get_trial(number_id).state != optuna.trial.TrialState.RUNNING:
            # A rerun of a finished trial's command (or resume=): train, but report nothing.
            log.warning(f"trial {self.number} of {self.study_name} has ended: not reporting")
        else:
            self.trial = optuna.trial.Trial(study, number_id)
        self.report_s += time.perf_counter() - tick

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if self.trial is not None and self.monitor in trainer.callback_metrics:
            tick = time.perf_counter()
            step = trainer.global_step
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step)
            prune = self.trial.should_prune() and step < (trainer.max_steps or step + 1)
            if prune:
                self.pruned_at_step = step
                self.trial.set_user_attr("pruned_at_step", step)
            self.report_s += time.perf_counter() - tick
        # Every process of a distributed run stops together, on rank 0's word.
        if trainer.strategy.broadcast(prune, src=0):
            trainer.should_stop = True
            log.info(f"trial {self.number} pruned at step {trainer.global_step}")
            if self.run_dir is not None and trainer.is_global_zero:
                from src import run_folder as runs

                runs.write_record(Path(self.run_dir), pruned_at_step=trainer.global_step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trial is not None:
            self.trial.set_user_attr("train_s", round(time.perf_counter() - self.fit_start, 3))
            self.trial.set_user_attr("report_s", round(self.report_s, 4))
