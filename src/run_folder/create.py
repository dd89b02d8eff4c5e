"""Creating a run folder: claimed atomically, never shared, never reused, and refused input
leaves nothing (``claim``, ``release``, and the Hydra callbacks that run before Hydra writes)."""

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from src.run_folder.folder import HYDRA_DIR, RECORD, RunFolder, RunFolderError, holds_run
from src.run_folder.record import resumable


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
