"""What ``run.yaml`` records (how a run started, how it ended, its final metrics), and how a run
is continued (``resume_config``)."""

import contextlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src import targets
from src.run_folder.folder import (
    CONFIG,
    GROUPS,
    LAST_CHECKPOINT,
    RECORD,
    RunFolder,
    RunFolderError,
    read_yaml,
)


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
