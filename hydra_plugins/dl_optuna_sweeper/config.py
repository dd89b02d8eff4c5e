"""The sweeper's config node, registered as ``hydra/sweeper=dl_optuna``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class StudySweeperConf:
    _target_: str = "hydra_plugins.dl_optuna_sweeper.sweeper.StudySweeper"
    # Sampler and pruner are built by the sweeper (and the pruner again in each job), not by Hydra.
    _recursive_: bool = False
    direction: str = "minimize"  # or maximize
    study_name: str = "study"
    # None: a journal file in the sweep folder (<sweep dir>/optuna_journal.log). Else an SQLAlchemy
    # URL (sqlite:///PATH, postgresql://..., mysql://...) or journal:PATH (a journal file anywhere,
    # e.g. on a cluster's shared file system).
    storage: str | None = None
    # Trials of the whole study (completed, pruned, or failed by their own error), over every
    # invocation and process: a rerun continues up to this number.
    n_trials: int = 20
    # Stop the sweep (exit status 1) once this many trials in a row have failed by their own error
    # (a broken config or code fails every trial in seconds, and each failure counts towards
    # n_trials); 0: never stop.
    max_consecutive_failures: int = 5
    # Trials handed to the launcher at once (with hydra/launcher=joblib, its n_jobs).
    n_jobs: int = 1
    # Any optuna.samplers class, built with hydra.utils.instantiate.
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    # none | median | successive_halving | hyperband, or a node with _target_ (any
    # optuna.pruners class and its arguments).
    pruner: Any = None
    # The search space in Hydra's override syntax: key: choice(...) | interval(...) |
    # tag(log, interval(...)) | range(...); a plain value is fixed.
    params: dict[str, Any] | None = None
    # The Lightning callback each job gets (as +callbacks.optuna_trial) to report its monitored
    # metric to its trial after every validation and to stop when the pruner says so.
    trial_callback: str | None = "src.lit.pruning.ReportToTrial"
    # Config keys (and key prefixes) that may differ between the invocations and machines of one
    # study: file locations. Every other key of the job config must match the study's.
    machine_keys: list[str] = field(default_factory=lambda: ["paths", "data.root"])


ConfigStore.instance().store(
    group="hydra/sweeper", name="dl_optuna", node=StudySweeperConf, provider="dl_optuna_sweeper"
)
