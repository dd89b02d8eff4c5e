"""What a run folder records, and how an interrupted run is picked up again.

A run folder holds Hydra's ``.hydra/`` (the composed config and the command-line overrides of its
first start), ``run.yaml`` (this module: what else reproduces it, and how it ended), the TensorBoard
events and ``checkpoints/``. ``python -m src.train resume=DIR`` continues the run in DIR with the
config of its first start, from ``DIR/checkpoints/last.ckpt``.
"""

import contextlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

RECORD = "run.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
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


class ResumeError(ValueError):
    """A run that cannot be resumed as asked; the message says why."""


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
    path = run_dir / RECORD
    record = OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}
    record.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(record)))
    os.replace(tmp, path)


def end_status(run_dir: Path) -> str:
    """How a run that returned ended: ``pruned`` if a sweep's pruner stopped it early (its record
    has ``pruned_at_step``, see src/lit/pruning.py), else ``completed``."""
    path = run_dir / RECORD
    record = OmegaConf.load(path) if path.exists() else {}
    return "pruned" if "pruned_at_step" in record else "completed"


def start_record(run_dir: Path, overrides: list[str]) -> None:
    """Record what reproduces this run, before it starts."""
    write_record(
        run_dir,
        status="running",
        started=now(),
        command=" ".join(["python -m src.train", *overrides]),
        overrides=list(overrides),
        git=git_state(),
        versions=versions(),
        device=device_description(),
        argv=sys.argv,
    )


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The config to continue ``run_dir`` with: its first start's, plus plain ``key=value`` changes.

    Any group choice (``model=...``) is refused: that would be another run, not this one resumed.
    """
    saved = run_dir / ".hydra" / "config.yaml"
    if not (run_dir / LAST_CHECKPOINT).is_file() or not saved.is_file():
        raise ResumeError(
            f"resume={run_dir}: no run to resume there (it needs {LAST_CHECKPOINT} "
            "and .hydra/config.yaml)"
        )
    changes = [o for o in overrides if not o.startswith(("resume=", "ckpt_path="))]
    groups = [o for o in changes if o.lstrip("+~").split("=")[0].split("/")[0] in GROUPS]
    if groups:
        raise ResumeError(
            f"resume={run_dir} continues that run as it was configured; "
            f"{', '.join(groups)} would make another run (start a new one instead)"
        )
    cfg = OmegaConf.load(saved)
    OmegaConf.set_struct(cfg, True)
    try:
        cfg.merge_with_dotlist([o for o in changes if not o.startswith("hydra.")])
    except Exception as e:
        raise ResumeError(f"resume={run_dir}: cannot apply {changes}: {e}") from None
    cfg.resume = str(run_dir)
    cfg.ckpt_path = str(run_dir / LAST_CHECKPOINT)
    return cfg


def config_choices(run_dir: Path) -> dict[str, str]:
    """The config-group options of the run's first start (``model: mlp``, ...)."""
    saved = run_dir / ".hydra" / "hydra.yaml"
    if saved.is_file():
        return dict(OmegaConf.load(saved).hydra.runtime.choices)
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


class CheckOutputFolder(Callback):
    """A Hydra callback that refuses an output folder it cannot write, before Hydra makes it (and
    fails there with a stack trace): one sentence, exit status 1, nothing written."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir)

    @staticmethod
    def _check(folder: str) -> None:
        path = Path(folder)
        existed = path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / ".write_test").touch()
            (path / ".write_test").unlink()
        except OSError as e:
            print(f"error: cannot write the output folder {folder}: {e.strerror}", file=sys.stderr)
            sys.exit(1)
        if not existed:
            path.rmdir()  # Hydra makes it again when the run starts
