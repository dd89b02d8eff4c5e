"""What a search is, read from the sweep's config: the record that a new study keeps and that any
later or parallel process is compared with, and the trial reporter that pruning needs."""

from collections.abc import Sequence
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from .errors import SweepError
from .space import Space
from .study import PRUNER_SPEC

REPORTER = "hydra_plugins.dl_optuna_sweeper.report.ReportToTrial"


def find_reporter(config: DictConfig) -> tuple[str | None, str | None]:
    """The dotted path of the job config's trial reporter, and its monitor (resolved)."""
    job = OmegaConf.to_container(config, resolve=False)
    job.pop("hydra", None)
    path = _find_target(job, REPORTER)
    monitor = OmegaConf.select(config, f"{path}.monitor") if path else None
    return path, monitor


def check_pruning(pruner: str | dict, reporter_path: str | None, monitor: str | None) -> None:
    """Refuse a pruner whose trials would never report: no reporter, or one without a monitor."""
    if pruner == "none" or monitor is not None:
        return
    reason = "its monitor is null" if reporter_path else "the job's callbacks have no reporter"
    raise SweepError(
        f"hydra.sweeper.pruner prunes on the trials' reports, but {reason}: add "
        f"callbacks.optuna_trial: {{_target_: {REPORTER}, monitor: <a validation metric>}} to "
        "the search config, or set hydra.sweeper.pruner=none"
    )


def record(
    config: DictConfig,
    space: Space,
    pruner: str | dict,
    direction: str,
    skip: Sequence[str],
) -> dict[str, Any]:
    """The search as its study records it: the space, the base config (all but ``hydra``, the
    searched keys and the keys in ``skip``), the pruner and the direction."""
    return {
        "search_space": {k: optuna.distributions.distribution_to_json(d)
                         for k, d in space.distributions.items()},
        "base_config": base_config(config, (*(k.lstrip("+~") for k in space.distributions), *skip)),
        "pruner": {"pruner": str(pruner)},
        "direction": {"direction": direction},
        PRUNER_SPEC: pruner,
    }  # fmt: skip


def base_config(config: DictConfig, skip: Sequence[str]) -> dict[str, str]:
    """The job config that every trial shares, flat and unresolved, without ``hydra`` and the
    keys (and key prefixes) in ``skip``."""
    node = OmegaConf.to_container(config, resolve=False)
    node.pop("hydra", None)
    return {
        k: v
        for k, v in _flat(node).items()
        if not any(k == s or k.startswith(f"{s}.") for s in skip)
    }


def _find_target(node: Any, target: str, prefix: str = "") -> str | None:
    """The dotted path of the first node whose ``_target_`` is ``target``."""
    if isinstance(node, dict):
        if node.get("_target_") == target:
            return prefix[:-1]
        for key, value in node.items():
            if (found := _find_target(value, target, f"{prefix}{key}.")) is not None:
                return found
    return None


def _flat(node: Any, prefix: str = "") -> dict[str, str]:
    """A config as ``{"a.b": "value"}`` (unresolved), to compare configs key by key."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    return {prefix[:-1]: str(node)}
