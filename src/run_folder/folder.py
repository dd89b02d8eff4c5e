"""The layout of a run folder, and reading one (``RunFolder``, ``find_runs``)."""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src import targets
from src.run_folder.upgrade import upgrade

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
        """The saved config, with what was renamed or retired since mapped onto today's classes
        (``upgrade``), after checking that it names only allowed ``_target_``s (``src.targets``;
        ``trusted`` extends the allow-list and comes from the local config)."""
        cfg = upgrade(OmegaConf.load(self.path / CONFIG))
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
