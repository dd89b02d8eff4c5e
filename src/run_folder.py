"""The run folder: the one module that knows what a run folder holds, and that creates, reads,
selects and records in it. Train, resume, evaluate, gradcheck and the user's tools go through it.

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
  allow-list before anything is built (``src.targets``).
"""

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, read_write

from src import targets

HYDRA_DIR = ".hydra"
CONFIG = Path(HYDRA_DIR) / "config.yaml"
OVERRIDES = Path(HYDRA_DIR) / "overrides.yaml"
HYDRA_CONFIG = Path(HYDRA_DIR) / "hydra.yaml"
RECORD = "run.yaml"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = Path(CHECKPOINTS) / "last.ckpt"
BEST_CHECKPOINTS = "best-step*.ckpt"
EVAL_DIR = "eval"
EVAL_METRICS = Path(EVAL_DIR) / "metrics.yaml"
EVENT_FILES = "events.out.tfevents.*"
#: The MLflow and W&B run ids that a resumed run continues (``src.lit.tracking``).
LOGGER_RUNS = "loggers.yaml"
#: How a run ended, as run.yaml's ``status`` says (``running`` while it runs).
FINISHED = ("completed", "pruned")

# Config groups: choosing another option is a different run, not a continuation of this one.
GROUPS = frozenset(
    ("data", "model", "optimizer", "trainer", "logger", "callbacks", "paths", "experiment",
     "hparams_search", "hydra", "scheduler")
)  # fmt: skip


# `resume=DIR` runs in DIR again and leaves DIR/.hydra as its first start wrote it
# (conf/hydra/default.yaml); Hydra composes that config before the run starts, hence a resolver.
if not OmegaConf.has_resolver("if_resuming"):
    OmegaConf.register_new_resolver(
        "if_resuming", lambda resume, then, otherwise: then if resume else otherwise
    )


class RunFolderError(ValueError):
    """A folder that holds no run, or a run that cannot be used as asked; one sentence."""


ResumeError = RunFolderError  # the name resume's callers know it by


def holds_run(path: Path) -> bool:
    """Whether ``path`` holds (part of) a run: a record, a saved config or checkpoints."""
    return any((path / p).exists() for p in (RECORD, HYDRA_DIR, CHECKPOINTS))


def read_yaml(path: Path) -> dict:
    """A YAML mapping, or {} if the file is missing or is not one (YAML's safe loader)."""
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # missing, unreadable or not YAML: no record
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class RunFolder:
    """A folder that ``python -m src.train`` wrote; every read of one goes through here."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str is taken too

    @classmethod
    def open(cls, path: str | Path, key: str = "run") -> "RunFolder":
        """The run in ``path``; ``RunFolderError`` (naming ``key``) if no run is there."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            what = "no such folder" if not path.is_dir() else f"no run there (no {CONFIG})"
            raise RunFolderError(f"{key}={path}: {what}")
        return cls(path)

    # -- what the run was ----------------------------------------------------------------------

    def config(self, trusted: Iterable[str] = ()) -> DictConfig:
        """The saved config, after checking that it names only allowed ``_target_``s
        (``src.targets``; ``trusted`` extends the allow-list and comes from the local config)."""
        cfg = OmegaConf.load(self.path / CONFIG)
        targets.check_targets(cfg, trusted, source=f"{self.path / CONFIG}")
        return cfg

    def overrides(self) -> list[str]:
        """The command-line overrides of the run's first start, as typed (``${monitor}`` in a
        sweep job's override stays as it is: it is not this file's to resolve)."""
        path = self.path / OVERRIDES
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else []

    def choices(self) -> dict[str, str]:
        """The config-group options of the run's first start (``model: mlp``, ...)."""
        saved = self.path / HYDRA_CONFIG
        if not saved.is_file():
            return {}
        return dict(OmegaConf.load(saved).hydra.runtime.choices)

    # -- what it recorded ----------------------------------------------------------------------

    def record(self) -> dict:
        """``run.yaml``: status, command, commit, versions, metrics ({} if there is none)."""
        return read_yaml(self.path / RECORD)

    @property
    def status(self) -> str:
        return str(self.record().get("status", "unknown"))

    def is_finished(self) -> bool:
        return self.status in FINISHED

    def metrics(self) -> dict[str, float]:
        """The final metrics run.yaml recorded (``best_val/acc``, ``final_test/acc``, ...)."""
        return dict(self.record().get("metrics") or {})

    def eval_metrics(self) -> dict:
        """What ``src.evaluate`` wrote (``eval/metrics.yaml``), or {}."""
        return read_yaml(self.path / EVAL_METRICS)

    def event_files(self) -> list[Path]:
        """The TensorBoard event files of the run, training's and evaluation's, oldest first."""
        return sorted(self.path.glob(EVENT_FILES))

    # -- checkpoints ---------------------------------------------------------------------------

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def tested_checkpoint(self) -> Path:
        """The checkpoint the run's final test used (run.yaml's ``tested_checkpoint``, relative
        to the folder). Older records do not name it: then the one best checkpoint, else last."""
        named = self.record().get("tested_checkpoint")
        if named:
            return self.path / named
        best = sorted((self.path / CHECKPOINTS).glob(BEST_CHECKPOINTS))
        return best[0] if len(best) == 1 else self.last_checkpoint

    # -- records -------------------------------------------------------------------------------

    def write_record(self, **fields: object) -> None:
        """Update ``run.yaml`` with ``fields`` (see ``write_record``)."""
        write_record(self.path, **fields)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the folder, as records store it (it may move)."""
        return os.path.relpath(Path(path).resolve(), self.path.resolve())


def _natural(path: Path) -> tuple:
    """Sort key: sweep jobs 2 before 10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts)


def find_runs(root: str | Path, recorded: bool = True) -> list[RunFolder]:
    """Every run folder under ``root`` (``root`` itself included), in path order (job 2 before
    job 10). With ``recorded=False`` also folders with Hydra's ``.hydra/`` but no ``run.yaml`` (a
    job killed before it could record itself)."""
    found = {p.parent for p in Path(root).rglob(HYDRA_DIR) if p.is_dir()}
    return [
        RunFolder(p) for p in sorted(found, key=_natural) if not recorded or (p / RECORD).is_file()
    ]


# ------------------------------------------------------------------------------------------------
# Creating a run folder: claimed atomically, never shared, never reused
# ------------------------------------------------------------------------------------------------


def claim(path: Path, exact: bool) -> Path:
    """Claim a new run folder at ``path``, atomically; return the folder claimed.

    The claim is the exclusive creation of its ``run.yaml``: of several processes that try one
    name at once, exactly one gets it. With ``exact`` (a folder the user named) a folder that
    holds a run is refused; otherwise the next free name ``<path>-2``, ``<path>-3``, ... is taken.
    """
    for n in range(1, 1000):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        if not holds_run(candidate):
            _CREATED.extend(p for p in (candidate, *candidate.parents) if not p.exists())
            candidate.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(candidate / RECORD, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass  # another process claimed it a moment ago
            else:
                with os.fdopen(fd, "w") as f:
                    f.write("status: starting\n")
                return candidate
        if exact:
            raise RunFolderError(
                f"hydra.run.dir={path} already holds a run; choose a new folder, or continue "
                f"that run with resume={path}"
            )
    raise RunFolderError(f"{path}: no free run folder name after 999 tries")


#: Folders this process created to claim a run folder (the run folder and missing parents).
_CREATED: list[Path] = []


def release(run_dir: Path) -> None:
    """Remove what a refused new run wrote (its record, saved config and log), and the folders
    its claim created if they are then empty: refused input leaves nothing behind."""
    for name in (RECORD, f"{RECORD}.tmp"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / HYDRA_DIR, ignore_errors=True)
    for log in run_dir.glob("*.log"):
        log.unlink(missing_ok=True)
    for folder in sorted(set(_CREATED), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def _check_writable(folder: Path) -> None:
    """Refuse an output folder that cannot be written (in one sentence, exit 1)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        _refuse(f"cannot write the output folder {folder}: permission denied")


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


class ClaimRunFolder(Callback):
    """A Hydra callback that checks a run's settings and claims its folder before Hydra writes
    anything: bad settings, a folder that already holds a run, a sweep folder that already holds
    jobs, or ``resume=`` of a folder with no run are refused in one sentence with exit status 1,
    and nothing is created.

    A job that keeps no record (``hydra.output_subdir=null``, e.g. ``src.gradcheck``) and is not
    a resume claims nothing.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from src.checks import check_values  # cheap value checks; nothing is built

        resuming = config.get("resume") is not None
        if not resuming and config.hydra.output_subdir is None:
            return
        try:
            check_values(config)
            if resuming:
                resumable(Path(config.resume))
                return
        except ValueError as e:
            _refuse(str(e))
        folder = Path(str(config.hydra.run.dir))
        _check_writable(folder)
        named = any(o.startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra)
        try:
            claimed = claim(folder, exact=named)
        except (RunFolderError, OSError) as e:
            _refuse(str(e))
        with read_write(config.hydra.run):
            config.hydra.run.dir = str(claimed)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        _check_writable(folder)
        if any(o.startswith("hydra.sweep.dir=") for o in config.hydra.overrides.hydra):
            jobs = [p for p in folder.iterdir() if holds_run(p)] if folder.is_dir() else []
            if jobs and "dl_optuna_sweeper" not in str(config.hydra.sweeper.get("_target_")):
                _refuse(
                    f"hydra.sweep.dir={folder} already holds {len(jobs)} job folders; choose a "
                    "new folder (a job is continued with python -m src.train resume=<job folder>)"
                )
            return  # a named folder: new, empty, or the Optuna sweeper continuing its study
        # The default name: claimed by creating it, so that sweeps started in the same second
        # get <name>, <name>-2, ...
        for n in range(1, 1000):
            candidate = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
            try:
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        # Every job's config is composed again from the hydra overrides: the claim goes there.
        with read_write(config.hydra):
            config.hydra.sweep.dir = str(candidate)
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={candidate}")


class RequireRunFolder(Callback):
    """A Hydra callback for entry points that open a run (``src.evaluate run=DIR``): a folder
    with no run is refused in one sentence, exit 1, before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            RunFolder.open(config.run)
        except RunFolderError as e:
            _refuse(str(e))


# ------------------------------------------------------------------------------------------------
# What run.yaml records
# ------------------------------------------------------------------------------------------------


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict[str, object]:
    """The commit of the code that ran, and whether the working tree had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        done.check_returncode()
        return done.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str]:
    names = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "numpy", "torchmetrics")
    found = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def device_description() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@rank_zero_only  # one record per run, however many processes train it
def write_record(run_dir: Path, **fields: object) -> None:
    """Update ``run.yaml`` with ``fields``, atomically (a crash never leaves half a record)."""
    path = Path(run_dir) / RECORD
    record = read_yaml(path)
    record.update(fields)
    tmp = path.with_name(f"{RECORD}.tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(record)))
    os.replace(tmp, path)


def write_failure(run_dir: Path, status: str, reason: str) -> None:
    """Record how a run ended badly, wherever the record can still be written (a full disk or a
    read-only folder may forbid it: then the message on the console is all there is)."""
    with contextlib.suppress(OSError):
        write_record(run_dir, status=status, error=reason, ended=now())


def end_status(run_dir: Path) -> str:
    """How a run that returned ended: ``pruned`` if a sweep's pruner stopped it early (its record
    has ``pruned_at_step``), else ``completed``."""
    return "pruned" if "pruned_at_step" in read_yaml(Path(run_dir) / RECORD) else "completed"


def start_record(run_dir: Path, overrides: list[str]) -> None:
    """Record what reproduces this run, before it starts. ``command`` is the command as typed,
    a record for people; tools use ``overrides`` and the saved config."""
    write_record(
        run_dir,
        status="running",
        started=now(),
        command=" ".join(["python -m src.train", *overrides]),
        overrides=list(overrides),
        git=git_state(),
        versions=versions(),
        device=device_description(),
        argv=sys.argv[1:],
    )


def resumable(run_dir: Path) -> RunFolder:
    """The run in ``run_dir`` if it can be resumed (a saved config and ``last.ckpt``)."""
    if not (run_dir / LAST_CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise RunFolderError(
            f"resume={run_dir}: no run to resume there (it needs {LAST_CHECKPOINT} and {CONFIG})"
        )
    return RunFolder(run_dir)


def resume_config(run_dir: Path, overrides: list[str], trusted: Iterable[str] = ()) -> DictConfig:
    """The config to continue ``run_dir`` with: its first start's, plus plain ``key=value`` changes.

    The saved config is checked like any config read from a folder (``RunFolder.config``). Any
    group choice (``model=...``) is refused: that would be another run, not this one resumed.
    """
    folder = resumable(run_dir)
    changes = [o for o in overrides if not o.startswith(("resume=", "ckpt_path="))]
    groups = [o for o in changes if o.lstrip("+~").split("=")[0].split("/")[0] in GROUPS]
    if groups:
        raise RunFolderError(
            f"resume={run_dir} continues that run as it was configured; "
            f"{', '.join(groups)} would make another run (start a new one instead)"
        )
    try:
        cfg = folder.config(trusted)
    except targets.UntrustedTargetError as e:
        raise RunFolderError(f"resume={run_dir}: {e}") from None
    OmegaConf.set_struct(cfg, True)
    try:
        cfg.merge_with_dotlist([o for o in changes if not o.startswith("hydra.")])
    except Exception as e:
        raise RunFolderError(f"resume={run_dir}: cannot apply {changes}: {e}") from None
    cfg.resume = str(run_dir)
    cfg.ckpt_path = str(run_dir / LAST_CHECKPOINT)
    return cfg


def config_choices(run_dir: Path) -> dict[str, str]:
    """The config-group options of the run's first start, else of the composing Hydra."""
    saved = RunFolder(Path(run_dir)).choices()
    if saved:
        return saved
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
