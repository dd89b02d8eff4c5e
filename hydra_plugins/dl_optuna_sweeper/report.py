"""The job side of the sweeper: a Lightning callback that reports the monitored validation metric
to the job's Optuna trial and stops the run when the pruner says so.

A search config adds it to the job's callbacks (``conf/hparams_search/mlp_optuna.yaml``):

    callbacks:
      optuna_trial:
        _target_: hydra_plugins.dl_optuna_sweeper.report.ReportToTrial
        monitor: ${monitor}

It finds its trial through Hydra's config of the job: the sweeper's storage and study name, and
the job number, which this sweeper makes the trial number. Outside a job of this sweeper (a plain
run, ``resume=`` of a trial's folder) it does nothing. A pruned run stops cleanly after that
validation and keeps its checkpoints and curves; ``pruned_at_step`` tells the training code that
the pruner stopped it.

In a process that runs trials it also keeps the console to the sweep's story: Lightning's notices
(device lines, model summary) show for the first trial of the process only; warnings and errors
always. (The sweeper sends the job's own INFO lines to its log file only.)
"""

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)

SWEEPER_TARGET = "hydra_plugins.dl_optuna_sweeper.sweeper.StudySweeper"
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")


@dataclass
class TrialAddress:
    """Where a job's trial is: what the callback needs to reach it from any process."""

    storage: str
    study_name: str
    number: int
    job_dir: Path
    sweep_dir: Path
    pruner: object  # the sweeper's pruner config, composed from the command line


def job_trial() -> TrialAddress | None:
    """The trial of this Hydra job, or None if this is no job of this sweeper."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.get("sweeper") or {}
    if hydra.mode != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER_TARGET:
        return None
    from .study import storage_url

    sweep_dir = Path(str(hydra.sweep.dir)).resolve()
    return TrialAddress(
        storage=storage_url(sweeper.get("storage"), sweep_dir),
        study_name=str(sweeper.study_name),
        number=int(hydra.job.num),
        job_dir=Path(str(hydra.runtime.output_dir)).resolve(),
        sweep_dir=sweep_dir,
        pruner=sweeper.get("pruner"),
    )


class ReportToTrial(pl.Callback):
    """After each validation, ``trial.report(monitor value, step)``; stop if ``should_prune()``
    (never at the run's last validation: that trial has completed)."""

    def __init__(self, monitor: str | None) -> None:
        self.monitor = monitor
        self.address = job_trial()
        self.trial = None
        self.prune = False  # the pruner stopped this run (on every rank)
        self.pruned_at_step: int | None = None  # read by the training code after fit
        self.report_s = 0.0  # seconds spent reaching the study: the job's share of the overhead
        self.fit_start = 0.0
        if self.address is not None:
            quiet_console()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.address is None:
            return
        import optuna

        from .study import make_pruner, open_storage, pruner_spec, trial_id

        tick = time.perf_counter()
        address = self.address
        storage = open_storage(address.storage)
        pruner = make_pruner(pruner_spec(address.pruner))
        study = optuna.load_study(study_name=address.study_name, storage=storage, pruner=pruner)
        number_id = trial_id(storage, address.study_name, address.number)
        frozen = storage.get_trial(number_id)
        recorded = frozen.user_attrs.get("job_dir")
        belongs = None if recorded is None else (address.sweep_dir / str(recorded)).resolve()
        if belongs is not None and belongs != address.job_dir:
            raise RuntimeError(
                f"job {address.number} runs in {address.job_dir}, but trial {address.number} "
                f"belongs in {recorded}: the launcher numbered the jobs otherwise than the trials"
            )
        if frozen.state != optuna.trial.TrialState.RUNNING:
            log.warning(f"trial {address.number} of {address.study_name} has ended: not reporting")
        else:
            self.trial = optuna.trial.Trial(study, number_id)
        self.report_s += time.perf_counter() - tick

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.address is None:
            return
        prune = False
        if self.trial is not None and self.monitor in trainer.callback_metrics:
            tick = time.perf_counter()
            step = trainer.global_step
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step)
            # The run's length however it was set (max_steps, or max_epochs with max_steps=-1):
            # Lightning's estimate of its optimizer steps (inf for a time limit alone).
            last = step >= trainer.estimated_stepping_batches
            prune = not last and self.trial.should_prune()
            self.report_s += time.perf_counter() - tick
        # Every process of a distributed run stops together, on rank 0's word.
        if trainer.strategy.broadcast(prune, src=0):
            self.prune = True
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.prune:  # the step it stopped at (later than the pruner's word with min_steps)
            self.pruned_at_step = trainer.global_step
            log.info(f"trial {self.address.number} pruned at step {self.pruned_at_step}")
        if self.trial is not None:
            if self.prune:
                self.trial.set_user_attr("pruned_at_step", self.pruned_at_step)
            self.trial.set_user_attr("train_s", round(time.perf_counter() - self.fit_start, 3))
            self.trial.set_user_attr("report_s", round(self.report_s, 4))


class _SweepConsole(logging.Filter):
    """Lets Lightning's notices through to a console during the first trial of this process
    only; warnings and errors always."""

    def __init__(self) -> None:
        super().__init__()
        self.trials = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.split(".")[0] not in LIGHTNING_LOGGERS or self.trials <= 1


_CONSOLE = _SweepConsole()


def quiet_console() -> None:
    """Count a trial of this process, and put the sweep's console filter on the console handlers
    of the root logger and of Lightning's loggers (Hydra makes new ones for each job)."""
    _CONSOLE.trials += 1
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for name in ("", *LIGHTNING_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            on_console = getattr(handler, "stream", None) in consoles
            is_file = isinstance(handler, logging.FileHandler)
            if on_console and not is_file and _CONSOLE not in handler.filters:
                handler.addFilter(_CONSOLE)
