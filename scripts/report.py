"""RESULTS.md's tables, generated from run folders: mean ± std over seeds, per configuration.

    python -m scripts.report                        # print every table of RESULTS.md
    python -m scripts.report --write                # rewrite them in RESULTS.md
    python -m scripts.report --results DIR --markdown FILE [--write]

RESULTS.md marks each generated table with ``<!-- report:begin NAME -->`` and
``<!-- report:end -->``; everything between the two is replaced by the table of the runs under
``RESULTS/NAME/`` (any depth: a sweep folder's numbered jobs, or single run folders).

A run is a run folder (``src.run_folder``): ``run.yaml`` (its status and final metrics, written by
``src.train``) and ``.hydra/config.yaml`` (its composed config). Runs whose configs differ only by
``seed`` form one group, one row: the mean ± sample standard deviation and the number n of
completed runs, for the validation accuracy of the tested checkpoint (``best_val/acc``, absent
without a validation split) and its test accuracy and loss; plus the test set's expected
calibration error when the run was evaluated (``eval/metrics.yaml``, ``python -m src.evaluate``).
Runs that did not complete are counted, never averaged.
"""

import argparse
import math
import re
import statistics
import sys
from pathlib import Path

import yaml

from src import run_folder

ROOT = Path(__file__).resolve().parents[1]

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
MARKERS = re.compile(
    r"(<!-- report:begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- report:end -->)", re.DOTALL
)


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


def format_cell(stat: tuple[float, float, int], completed: int) -> str:
    """``mean ± std``; with the count when fewer runs than completed have the value."""
    mean, std, n = stat
    if n == 0:
        return "–"
    cell = f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}"
    return cell if n == completed else f"{cell} (n={n})"


def table(folder: Path) -> str:
    """The Markdown table of the runs under ``folder``, one row per configuration."""
    runs = find_runs(folder)
    if not runs:
        shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        return f"(no runs under {shown} yet)\n"
    rows = [summarize_group(g) for g in group_by_config(runs)]
    titles = [t for t in COLUMNS if any(r[t][2] for r in rows)]
    lines = [
        "| configuration | n (completed / runs) | " + " | ".join(titles) + " |",
        "|---|---:|" + "---:|" * len(titles),
    ]
    for r in rows:
        cells = [f"`{r['settings']}`", f"{r['completed']} / {r['runs']}"]
        lines.append(
            "| " + " | ".join(cells + [format_cell(r[t], r["completed"]) for t in titles]) + " |"
        )
    return "\n".join(lines) + "\n"


def fill(markdown: str, results: Path) -> str:
    """``markdown`` with every marked table regenerated from ``results/NAME``."""

    def regenerate(match: re.Match) -> str:
        return match.group(1) + table(results / match.group("name")) + match.group(4)

    return MARKERS.sub(regenerate, markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="folder of the tables' run folders (default: results/)")  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=ROOT / "RESULTS.md")
    parser.add_argument("--write", action="store_true", help="rewrite the tables in --markdown")
    args = parser.parse_args(argv)
    try:
        text = args.markdown.read_text()
    except OSError as e:
        print(f"error: cannot read {args.markdown}: {e.strerror}", file=sys.stderr)
        return 1
    names = [m.group("name") for m in MARKERS.finditer(text)]
    if not names:
        print(f"error: {args.markdown} has no <!-- report:begin NAME --> markers", file=sys.stderr)
        return 1
    if args.write:
        args.markdown.write_text(fill(text, args.results))
    for name in names:
        print(f"## {name}\n\n{table(args.results / name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
