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
    # invocation and process: a rerun continues up to this number. Processes that ask at the same
    # moment can exceed it by at most one batch (n_jobs trials) per other process.
    n_trials: int = 20
    # Stop the sweep (exit status 1) once this many trials in a row have failed by their own error
    # (a broken config or code fails every trial in seconds, and each failure counts towards
    # n_trials); 0: never stop.
    max_consecutive_failures: int = 5
    # Trials handed to the launcher at once (with hydra/launcher=joblib, its n_jobs).
    n_jobs: int = 1
    # Any optuna.samplers class, built with hydra.utils.instantiate. With a seed, each trial's
    # sampler is seeded with seed + its trial number.
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    # none | median | successive_halving | hyperband, or a node with _target_ (any
    # optuna.pruners class and its arguments). Pruning needs the trial reporter in the job's
    # callbacks (hydra_plugins.dl_optuna_sweeper.report.ReportToTrial).
    pruner: Any = None
    # The search space in Hydra's override syntax: key: choice(...) | interval(...) |
    # tag(log, interval(...)) | range(...); a plain value is fixed.
    params: dict[str, Any] | None = None
    # Config keys (and key prefixes) that may differ between the invocations and machines of one
    # study: file locations. Every other key of the job config must match the study's.
    machine_keys: list[str] = field(default_factory=lambda: ["paths", "data.root"])
    # A RUNNING trial whose process shows no sign of life for this long is failed and replaced:
    # a process on another machine (its heartbeat), or one killed before it wrote its owner.
    stale_after_s: float = 600.0
    # Modules (besides optuna.pruners and optuna.samplers) whose classes a study's stored pruner
    # spec may name; a study that names anything else is refused before anything is built.
    allowed_targets: list[str] = field(default_factory=list)


ConfigStore.instance().store(
    group="hydra/sweeper", name="dl_optuna", node=StudySweeperConf, provider="dl_optuna_sweeper"
)
