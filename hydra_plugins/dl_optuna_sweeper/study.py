"""The study in its storage: opening the storage, creating or joining the study with the record of
the search it was made for, and building its pruner.

A job reaches its trial only through the storage (URL, study name, trial number), so it works the
same in the sweep's own process, in a joblib worker or in a SLURM job on another machine.

Whichever process creates the study records what it was made for (search space, base config,
pruner, direction); any other process waits for that record and is refused if its own differs.
Nothing is ever built from what a study stores: a stored pruner spec that names a target outside
``optuna.pruners`` / ``optuna.samplers`` (or the modules the sweeper's ``allowed_targets`` adds)
makes the study refused before anything is built.
"""

import time
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .errors import SweepError

DEFAULT_JOURNAL = "optuna_journal.log"
JOURNAL_PREFIX = "journal:"
PRUNERS = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
}
# The modules whose classes a stored spec may name; the sweeper's allowed_targets adds more.
ALLOWED_MODULES = ("optuna.pruners", "optuna.samplers")
# The record a creating process writes (in this order) and every other process compares with.
RECORD_KINDS = ("search_space", "base_config", "pruner", "direction")
PRUNER_SPEC = "pruner_spec"  # the pruner config itself, kept as a record (never built from)
# How long a joining process waits for the creator's record before it gives up.
RECORD_WAIT_S = 30.0


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The storage to use: the given one, or a journal file in the sweep folder."""
    if storage is None:
        return f"{JOURNAL_PREFIX}{Path(sweep_dir).resolve() / DEFAULT_JOURNAL}"
    return str(storage)


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` URL (None for a database URL)."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    return Path(url[len(JOURNAL_PREFIX) :].removeprefix("//"))


def portable_url(url: str, folder: Path) -> str:
    """``url`` as written into ``folder``: a journal inside it relative to it, so that the folder
    can be moved or copied; any other storage as it is."""
    path = journal_path(url)
    if path is None:
        return url
    try:
        return f"{JOURNAL_PREFIX}{path.resolve().relative_to(folder.resolve())}"
    except ValueError:
        return url


def resolve_url(url: str, folder: Path) -> str:
    """A storage URL read from a file in ``folder``: a relative journal path is relative to it."""
    path = journal_path(url)
    if path is None or path.is_absolute():
        return url
    return f"{JOURNAL_PREFIX}{(folder / path).resolve()}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``journal:PATH`` or an SQLAlchemy URL; ``SweepError`` if it fails."""
    try:
        path = journal_path(url)
        if path is not None:
            path = path.resolve()
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
        raise SweepError(f"hydra.sweeper.storage={url} cannot be opened: {_reason(e)}") from None


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def pruner_spec(pruner: Any) -> str | dict:
    """The pruner config as a plain value: a short name of PRUNERS or a node with a _target_."""
    if pruner is None:
        return "none"
    if isinstance(pruner, DictConfig):
        pruner = OmegaConf.to_container(pruner, resolve=True)
    if isinstance(pruner, str) and pruner in PRUNERS:
        return pruner
    if isinstance(pruner, dict) and "_target_" in pruner:
        return pruner
    raise SweepError(
        f"hydra.sweeper.pruner={pruner} is not one of {', '.join(PRUNERS)} "
        "nor a node with a _target_"
    )


def make_pruner(spec: str | dict) -> optuna.pruners.BasePruner:
    """The pruner of a spec from the sweep's own config (composed from the command line)."""
    from hydra.utils import instantiate

    node = {"_target_": PRUNERS[spec]} if isinstance(spec, str) else spec
    try:
        return instantiate(node)
    except Exception as e:
        raise SweepError(f"hydra.sweeper.pruner cannot be built: {_reason(e)}") from None


def check_targets(value: Any, key: str, allowed: tuple[str, ...] = ()) -> None:
    """Refuse a stored spec with a ``_target_`` outside ALLOWED_MODULES and ``allowed``, at any
    depth, before anything is imported or built; ``key`` names it in the message."""
    modules = (*ALLOWED_MODULES, *allowed)
    if isinstance(value, dict):
        target = value.get("_target_")
        if target is not None:
            module, _, name = str(target).rpartition(".")
            inside = any(module == m or module.startswith(f"{m}.") for m in modules)
            if not inside or not name.isidentifier() or name.startswith("_"):
                raise SweepError(
                    f"{key} names _target_ {target}, which a study may not name (only classes "
                    f"of {', '.join(modules)}; hydra.sweeper.allowed_targets adds modules): "
                    "refused before anything was built"
                )
        for inner_key, inner in value.items():
            check_targets(inner, f"{key}.{inner_key}", allowed)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            check_targets(inner, f"{key}[{i}]", allowed)


def join_study(
    storage: optuna.storages.BaseStorage,
    url: str,
    name: str,
    direction: str,
    sampler: optuna.samplers.BaseSampler | None,
    pruner: optuna.pruners.BasePruner,
    record: dict[str, Any],
    allowed: tuple[str, ...] = (),
    wait_s: float = RECORD_WAIT_S,
) -> tuple[optuna.Study, bool]:
    """Create the study and write its record, or load it and check this search against the
    record of its creator; return the study and whether this process created it.

    Creating is atomic in every Optuna storage (a second creator gets DuplicatedStudyError), so
    of two processes that start together exactly one records its search; the other waits up to
    ``wait_s`` for that record and is refused if its own search differs.
    """
    where = f"study {name} in {url}"
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except Exception as e:
        raise SweepError(f"{where} cannot be created: {_reason(e)}") from None
    else:
        for kind in (*RECORD_KINDS, PRUNER_SPEC):
            study.set_user_attr(kind, record[kind])
        return study, True

    saved = _wait_for_record(study, wait_s)
    if saved is None:
        raise SweepError(
            f"{where} has no record of the search it was made for (its creating process stopped "
            f"before writing it): start a new study with another hydra.sweep.dir or "
            "hydra.sweeper.study_name"
        )
    if PRUNER_SPEC in saved:
        check_targets(saved[PRUNER_SPEC], f"{where}: the stored {PRUNER_SPEC}", allowed)
    for kind in RECORD_KINDS:
        if difference := first_difference(kind, saved[kind], record[kind]):
            raise SweepError(
                f"{where} was made for another search ({difference}); rerun it as it was, or "
                "start a new study with another hydra.sweep.dir or hydra.sweeper.study_name"
            )
    return study, False


def _wait_for_record(study: optuna.Study, wait_s: float) -> dict | None:
    deadline = time.monotonic() + wait_s
    while True:
        saved = study.user_attrs
        if all(kind in saved for kind in RECORD_KINDS):
            return saved
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def first_difference(kind: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """One phrase naming the first key whose value differs between two records of ``kind``."""
    from .space import describe

    def show(value: str | None) -> str:
        if value is None:
            return "(absent)"
        if kind == "search_space":
            return describe(optuna.distributions.json_to_distribution(value))
        return str(value)

    label = kind.replace("_", " ")
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            # A record of one value ({"pruner": ...}) is named by its kind alone.
            name = label if set(old) | set(new) == {kind} else f"{label} {key}"
            return f"{name}: the study has {show(old.get(key))}, this one {show(new.get(key))}"
    return None


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
