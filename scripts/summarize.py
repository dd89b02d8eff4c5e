"""One table of a sweep: every job's overrides and final metrics, best validation accuracy first.

    python -m scripts.summarize outputs/sweeps/2026-01-01_12-00-00_mlp
    python -m scripts.summarize SWEEP_DIR --out results/mlp_sweep   # results/mlp_sweep.{md,csv}
    python -m scripts.summarize results/mlp_search --figures docs/figures   # the study's figures

A job is a run folder of the sweep (``src.run_folder``); a single run's folder works too. Its
status and final metrics are what its ``run.yaml`` recorded: ``best_val/acc`` (the validation
accuracy of the checkpoint that was tested) and ``final_test/acc``, ``final_test/loss`` (that
checkpoint on the test set). Its TensorBoard curves add ``val/loss`` at the tested checkpoint's
step and the last step logged.

Jobs are ranked by validation accuracy, never by test accuracy: the test set only reports. A job
that did not complete is listed at the bottom with the last step it logged, so a broken job is seen
rather than silently dropped, with the status its ``run.yaml`` recorded: ``interrupted`` (stopped
cleanly, can be resumed), ``failed`` (with its error) or ``running`` (still running, or killed
before it could say so); ``unknown`` if it has no ``run.yaml``. A trial that an Optuna sweep's
pruner stopped early is ``pruned`` (listed after the completed jobs, with the step it reached).

Writes ``summary.md`` and ``summary.csv`` into the sweep folder (or ``--out PREFIX``) and prints
the Markdown table. On an Optuna sweep (its folder has ``optimization_results.yaml``) it also writes
the study's figures next to them: ``study_optimization_history.png``,
``study_param_importances.png`` and ``study_intermediate_values.png``.
"""

import argparse
import logging
import math
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from src.run_folder import RunFolder, find_runs
from src.scalars import read_scalars

METRIC_COLUMNS = ["val_acc", "val_loss", "test_acc", "test_loss"]
TRIAL_LINK = "+callbacks.optuna_trial."
# Rank: completed jobs, then pruned ones, then the rest; by validation accuracy within each.
STATUS_RANK = {"completed": 0, "pruned": 1}


def overrides_of(job: RunFolder) -> dict[str, str]:
    """The job's command-line overrides as ``{key: value}``."""
    return dict(o.split("=", 1) if "=" in o else (o, "") for o in job.overrides())


def read_curves(job_dir: Path) -> dict[str, dict[int, float]]:
    """The job's logged scalars (``src.scalars.read_scalars``); empty if it logged none."""
    try:
        return read_scalars(job_dir)
    except FileNotFoundError:
        return {}
    except Exception as e:  # a truncated event file (a killed job) must not stop the summary
        logging.warning(f"{job_dir}: unreadable events ({type(e).__name__}: {e})")
        return {}


def val_loss_at(curves: dict[str, dict[int, float]], val_acc: float) -> float:
    """``val/loss`` at the first validation that reached ``val_acc`` (the tested checkpoint's)."""
    for step, acc in curves.get("val/acc", {}).items():
        if math.isclose(acc, val_acc, rel_tol=1e-6):  # float32 in the events, float in run.yaml
            return curves.get("val/loss", {}).get(step, math.nan)
    return math.nan


def minutes_between(start: object, end: object) -> float:
    """Minutes from one ISO timestamp of ``run.yaml`` to another; NaN if either is missing."""
    try:
        elapsed = datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
    except ValueError:
        return math.nan
    return round(elapsed.total_seconds() / 60, 1)


def job_metrics(record: dict, curves: dict[str, dict[int, float]]) -> dict[str, object]:
    """One job's row: status and final metrics as its ``run.yaml`` recorded them; from its curves,
    the validation loss of the tested checkpoint and the last step it logged."""
    metrics = record.get("metrics") or {}
    val_acc = float(metrics.get("best_val/acc", math.nan))
    return {
        "status": record.get("status", "unknown"),
        "val_acc": val_acc,
        "val_loss": val_loss_at(curves, val_acc),
        "test_acc": float(metrics.get("final_test/acc", math.nan)),
        "test_loss": float(metrics.get("final_test/loss", math.nan)),
        "steps": max((max(points) for points in curves.values() if points), default=0),
        "wall_min": minutes_between(record.get("started"), record.get("finished")),
    }


def summarize(sweep_dir: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The sweep's table, best first, and the overrides that all its jobs share.

    Only the overrides that differ between jobs get a column; the shared ones are returned apart.
    """
    jobs = find_runs(sweep_dir, recorded=False)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job folders (folders with a .hydra/ inside)")
    # The sweeper's link from a job to its Optuna trial is no setting of the run: not a column.
    overrides = {
        job: {k: v for k, v in overrides_of(job).items() if not k.startswith(TRIAL_LINK)}
        for job in jobs
    }
    keys = list(dict.fromkeys(k for o in overrides.values() for k in o))
    varying = [k for k in keys if len({o.get(k) for o in overrides.values()}) > 1 or len(jobs) == 1]
    shared = {k: v for k, v in overrides[jobs[0]].items() if k not in varying}

    rows = []
    for job in jobs:
        row: dict[str, object] = {"job": job.path.name}
        row.update({k: overrides[job].get(k, "") for k in varying})
        record = job.record()
        row.update(job_metrics(record, read_curves(job.path)))
        row["error"] = str(record.get("error") or "") if row["status"] not in STATUS_RANK else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.error.any():
        table = table.drop(columns="error")
    # Best validation accuracy first; pruned jobs next; jobs without final metrics last; ties keep
    # the job order.
    table["_rank"] = table.status.map(STATUS_RANK).fillna(len(STATUS_RANK))
    table = table.sort_values(["_rank", "val_acc"], ascending=[True, False], na_position="last",
                              kind="stable").drop(columns="_rank")  # fmt: skip
    return table.reset_index(drop=True), shared


def to_markdown(table: pd.DataFrame, shared: dict[str, str], title: str) -> str:
    """A GitHub Markdown table: metrics to 4 places, blank where missing."""

    def cell(column: str, value: object) -> str:
        if isinstance(value, float) and math.isnan(value):
            return ""
        if column in METRIC_COLUMNS:
            return f"{value:.4f}"
        if column == "error" and len(str(value)) > 80:
            value = str(value)[:77] + "..."
        return str(value).replace("|", "\\|")

    lines = [f"# {title}", ""]
    if shared:
        common = " ".join(f"`{k}={v}`" for k, v in shared.items())
        lines += [f"Shared overrides: {common}", ""]
    lines += ["Ranked by validation accuracy (`val_acc`); the test columns only report.", ""]
    columns = list(table.columns)
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (or one run's folder)")
    parser.add_argument(
        "--out", type=Path, help="write OUT.md and OUT.csv (default: SWEEP_DIR/summary)"
    )
    parser.add_argument(
        "--figures", type=Path, help="folder for an Optuna sweep's figures (default: OUT's)"
    )
    args = parser.parse_args(argv)

    try:
        table, shared = summarize(args.sweep_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = args.out or args.sweep_dir / "summary"
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv = Path(f"{out}.md"), Path(f"{out}.csv")
    markdown = to_markdown(table, shared, title=f"Sweep {args.sweep_dir.resolve().name}")
    md.write_text(markdown)
    table.to_csv(csv, index=False)
    print(markdown)
    print(f"wrote {md} and {csv}")
    figures = args.figures or out.parent
    figures.mkdir(parents=True, exist_ok=True)
    for figure in study_figures(args.sweep_dir, figures):
        print(f"wrote {figure}")
    return 0


def study_figures(sweep_dir: Path, out_dir: Path) -> list[Path]:
    """The figures of an Optuna sweep's study (none for another folder)."""
    if not (sweep_dir / "optimization_results.yaml").is_file():
        return []
    from hydra_plugins.dl_optuna_sweeper.figures import write_study_figures

    return write_study_figures(sweep_dir, out_dir)


if __name__ == "__main__":
    sys.exit(main())
