"""What the sweeper and its jobs share: opening the storage, building the pruner, finding a trial.

A job reaches its trial only through the storage (URL, study name, trial number), so it works the
same in the sweep's own process, in a joblib worker or in a SLURM job on another machine.
"""

import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

DEFAULT_JOURNAL = "optuna_journal.log"
# A sweep process writes the time into its running trials every HEARTBEAT_S; a trial of another
# machine whose last beat is older than STALE_AFTER_S is taken for dead.
HEARTBEAT_S = 60
STALE_AFTER_S = 600
JOURNAL_PREFIX = "journal:"
PRUNERS = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
}


class StudyError(ValueError):
    """A storage, study or config that the sweep cannot use; the message is one sentence."""


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The storage to use: the given one, or a journal file in the sweep folder."""
    if storage is None:
        return f"{JOURNAL_PREFIX}{Path(sweep_dir).resolve() / DEFAULT_JOURNAL}"
    return str(storage)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``journal:PATH`` or an SQLAlchemy URL; ``StudyError`` if it fails."""
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = Path(url[len(JOURNAL_PREFIX) :].removeprefix("//")).resolve()
            if not path.parent.is_dir():
                raise FileNotFoundError(f"no folder {path.parent}")
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        if "://" not in url:
            raise ValueError(
                "not a storage URL (use sqlite:///PATH, postgresql://..., mysql://... "
                "or journal:PATH)"
            )
        # SQLite: parallel jobs wait for the lock instead of failing after 5 s.
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudyError(f"hydra.sweeper.storage={url} cannot be opened: {reason}") from None


def pruner_spec(pruner: Any) -> str | dict:
    """The pruner config as a plain value (kept in the study, so that every job prunes alike)."""
    if pruner is None:
        return "none"
    if isinstance(pruner, DictConfig):
        return OmegaConf.to_container(pruner, resolve=True)
    if isinstance(pruner, str) and pruner in PRUNERS:
        return pruner
    if isinstance(pruner, dict) and "_target_" in pruner:
        return pruner
    raise StudyError(
        f"hydra.sweeper.pruner={pruner} is not one of {', '.join(PRUNERS)} "
        "nor a node with a _target_"
    )


def make_pruner(spec: str | dict) -> optuna.pruners.BasePruner:
    from hydra.utils import instantiate

    node = {"_target_": PRUNERS[spec]} if isinstance(spec, str) else spec
    return instantiate(node)


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def _process_start(pid: int) -> str | None:
    """The start time of a process (Linux), so that a reused pid is not taken for the owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner() -> dict[str, object]:
    """This process, as recorded on the trials it runs."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _process_start(pid),
        "heartbeat": time.time(),
    }


def owner_alive(attrs: dict) -> bool:
    """Whether the sweep process that runs a trial still lives: on this machine, whether its pid
    runs; on another, whether it wrote its heartbeat in the last STALE_AFTER_S."""
    if attrs.get("host") != socket.gethostname() or "pid" not in attrs:
        beat = attrs.get("heartbeat")
        return beat is None or time.time() - float(beat) < STALE_AFTER_S
    pid = int(attrs["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = attrs.get("pid_start")
    return start is None or _process_start(pid) == start
