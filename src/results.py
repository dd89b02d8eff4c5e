"""Tables over seeds from run folders: which runs form one row, and their mean ± std.

Runs whose configs differ only by ``seed`` form one group, one row: the mean ± sample standard
deviation and the number n of completed runs, for the validation accuracy of the tested checkpoint
(``best_val/acc``, absent without a validation split) and its test accuracy and loss; plus the test
set's expected calibration error when the run was evaluated (``eval/metrics.yaml``). Runs that did
not complete are counted, never averaged. ``python -m scripts.report`` writes RESULTS.md's tables
from these rows, and ``python -m src.reproduce`` reruns them.
"""

import math
import re
import statistics
from pathlib import Path

import yaml

from src import run_folder

# Column title -> where its value is: a run.yaml metric, or ("eval", split, key) in
# eval/metrics.yaml.
COLUMNS = {
    "val acc": "best_val/acc",
    "test acc": "final_test/acc",
    "test loss": "final_test/loss",
    "test ECE": ("eval", "test", "ece"),
}
# Overrides that name no setting of the run: where its data or outputs are.
NOT_SETTINGS = re.compile(r"^(seed|data\.root|paths\.\w+|hydra\.[\w.]+)=")


def read_run(run: run_folder.RunFolder) -> dict:
    """A run's status, metrics, config without its seed, and the overrides that set it up."""
    config = run_folder.read_yaml(run.path / run_folder.CONFIG)  # as text: nothing is built
    config.pop("seed", None)  # (unresolved: the NumPy MLP's model.seed stays "${seed}")
    metrics = run.metrics()
    evaluation = run.eval_metrics()
    for title, where in COLUMNS.items():
        if isinstance(where, tuple) and isinstance(evaluation.get(where[1]), dict):
            metrics[title] = evaluation[where[1]].get(where[2])
    return {
        "dir": run.path,
        "status": run.status,
        "metrics": metrics,
        "config": config,
        "settings": [o for o in run.overrides() if not NOT_SETTINGS.match(o)],
    }


def find_runs(folder: Path) -> list[dict]:
    """Every run under ``folder``, in path order."""
    return [read_run(run) for run in run_folder.find_runs(folder)]


def group_by_config(runs: list[dict]) -> list[list[dict]]:
    """Runs whose configs are equal but for ``seed``, in the order of their first run."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(yaml.safe_dump(run["config"], sort_keys=True), []).append(run)
    return list(groups.values())


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (nan for one value) and count."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    return mean, statistics.stdev(values) if n > 1 else math.nan, n


def summarize_group(group: list[dict]) -> dict:
    """One row: the settings the runs share; mean ± std (n) of each column over completed runs."""
    completed = [r for r in group if r["status"] == "completed"]
    shared = [s for s in group[0]["settings"] if all(s in r["settings"] for r in group)]
    row = {"settings": " ".join(shared) or "(defaults)", "runs": len(group),
           "completed": len(completed)}  # fmt: skip
    for title, where in COLUMNS.items():
        key = title if isinstance(where, tuple) else where
        values = [r["metrics"][key] for r in completed if r["metrics"].get(key) is not None]
        row[title] = mean_std([float(v) for v in values])
    return row
