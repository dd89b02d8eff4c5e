"""The run folder: the one package that knows what a run folder holds, and that creates, reads,
selects and records in it. Train, resume, evaluate, gradcheck and the user's tools go through it:
``folder`` (the layout, ``RunFolder``, ``find_runs``), ``create`` (``claim``, ``release``, the Hydra
callbacks), ``record`` (``run.yaml``, ``resume_config``) and ``upgrade`` (older saved configs read
with today's classes).

A run folder holds::

    .hydra/config.yaml      the composed config of the run's first start (Hydra writes it)
    .hydra/overrides.yaml   the command-line overrides of the first start
    .hydra/hydra.yaml       Hydra's own config, with the config-group choices
    run.yaml                the record: status, command, commit, versions, final metrics, and the
                            checkpoint the final test used (``tested_checkpoint``)
    checkpoints/            last.ckpt (the newest state: what resume continues from) and
                            best-step<N>.ckpt (the best by validation, when the run selects on it)
    events.out.tfevents.*   the TensorBoard curves (csv/, loggers.yaml: the other loggers')
    eval/                   what ``python -m src.evaluate`` writes: metrics.yaml and figures

Three promises:

- **Never shared, never reused.** A new run claims its folder atomically (``claim``): runs
  started in the same second get ``<name>``, ``<name>-2``, ... A folder that already holds a run
  is refused, except by ``resume=``.
- **Movable.** Every path the record names is relative to the folder, and checkpoints' own
  bookkeeping is rebased when a run continues elsewhere (``src.lit.callbacks.RunCheckpoint``).
- **Safe to open.** ``RunFolder.config`` checks every ``_target_`` of a saved config against an
  allow-list before anything is built (``src.targets``), after mapping what the project has since
  merged or retired onto its successors (``upgrade``), so older folders still open.
"""

from src.run_folder.create import ClaimRunFolder, RequireRunFolder, claim, release
from src.run_folder.folder import (
    BEST_CHECKPOINTS,
    CHECKPOINTS,
    CONFIG,
    EVAL_DIR,
    EVAL_METRICS,
    EVENT_FILES,
    FINISHED,
    GROUPS,
    HYDRA_CONFIG,
    HYDRA_DIR,
    LAST_CHECKPOINT,
    LOGGER_RUNS,
    OVERRIDES,
    RECORD,
    RunFolder,
    RunFolderError,
    find_runs,
    holds_run,
    read_yaml,
)
from src.run_folder.record import (
    config_choices,
    device_description,
    end_status,
    git_state,
    now,
    resumable,
    resume_config,
    start_record,
    versions,
    write_failure,
    write_record,
)

__all__ = [
    "BEST_CHECKPOINTS", "CHECKPOINTS", "CONFIG", "EVAL_DIR", "EVAL_METRICS", "EVENT_FILES",
    "FINISHED", "GROUPS", "HYDRA_CONFIG", "HYDRA_DIR", "LAST_CHECKPOINT", "LOGGER_RUNS",
    "OVERRIDES", "RECORD", "ClaimRunFolder", "RequireRunFolder", "RunFolder", "RunFolderError",
    "claim", "config_choices", "device_description", "end_status", "find_runs", "git_state",
    "holds_run", "now", "read_yaml", "release", "resumable", "resume_config", "start_record",
    "versions", "write_failure", "write_record",
]  # fmt: skip
