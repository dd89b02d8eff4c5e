"""Redraw a run's evaluation figures from its record alone: ``eval/metrics.yaml``.

    python -m scripts.plot_evaluation results/convnet_default/0 --out docs/figures --prefix convnet_

``python -m src.evaluate`` needs the run's checkpoint; this needs only what it recorded, so it works
on the committed records in ``results/``: the confusion matrix of each evaluated split, and its
reliability diagram where the record holds the bins (evaluations made after they were recorded).
"""

import argparse
import sys
from pathlib import Path

from src.evaluate import plot_confusion, plot_reliability
from src.run_folder import RunFolder, RunFolderError


def plot_evaluation(run: RunFolder, out: Path, prefix: str = "") -> list[Path]:
    """Write the figures of ``run``'s evaluation into ``out``; return their paths."""
    evaluation = run.eval_metrics()
    written = []
    for split in ("val", "test"):
        metrics = evaluation.get(split)
        if not isinstance(metrics, dict):
            continue
        figures = {
            "confusion_matrix": plot_confusion(
                metrics["confusion_matrix"], evaluation["classes"], f"{split} confusion matrix"
            )
        }
        if "reliability" in metrics:
            figures["reliability"] = plot_reliability(
                metrics["reliability"], metrics["ece"], f"{split} reliability"
            )
        for name, figure in figures.items():
            path = out / f"{prefix}{split}_{name}.png"
            figure.savefig(path, dpi=100)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with eval/metrics.yaml")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNGs")
    parser.add_argument("--prefix", default="", help="prefix of the file names")
    args = parser.parse_args(argv)
    try:
        run = RunFolder.open(args.run)
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not run.eval_metrics():
        print(
            f"error: {args.run} has no evaluation (python -m src.evaluate run=...)", file=sys.stderr
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in plot_evaluation(run, args.out, args.prefix):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
