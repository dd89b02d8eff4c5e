"""Loss and accuracy curves of runs against training steps, as PNG figures, from TensorBoard logs.

    python -m scripts.plot_curves outputs/runs/RUN                  # RUN/curves.png
    python -m scripts.plot_curves RUN_A RUN_B --out docs/figures     # docs/figures/RUN_A.png, ...
    python -m scripts.plot_curves RUN_A RUN_B --overlay docs/figures/compare.png --splits test

Each figure has two panels, loss and accuracy, with one curve per split: ``train`` (logged every
few steps, noisy, so ``--smooth N`` draws its running mean over N points), ``val`` (the held-out
training images) and ``test`` (the full test set), both at every validation interval. ``--overlay``
draws all runs into one figure instead: colour tells the run, line style the split. The loss axis is
logarithmic, since the first steps' losses can dwarf the rest.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, works on servers and in tests
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import LogFormatter

from src.scalars import read_scalars

SPLITS = ("train", "val", "test")
STYLES = {"train": ":", "val": "--", "test": "-"}
METRICS = (("loss", "cross-entropy loss"), ("acc", "accuracy"))


class PlainLogFormatter(LogFormatter):
    """Labels the log-axis ticks that matplotlib would label, as plain numbers (0.6, not 6e-01)."""

    def __call__(self, x, pos=None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def curve(scalars: dict[str, dict[int, float]], split: str, metric: str, smooth: int = 1):
    """One curve of ``read_scalars``'s result as a Series of values indexed by step, or None if
    the run did not log it."""
    points = scalars.get(f"{split}/{metric}")
    if not points:
        return None
    series = pd.Series(points)
    if split == "train" and smooth > 1:
        series = series.rolling(smooth, min_periods=1).mean()
    return series


def plot(runs: dict[str, dict], splits, smooth: int, title: str | None = None):
    """A figure with a loss and an accuracy panel holding every run's curves of ``splits``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, scalars) in enumerate(runs.items()):
        for ax, (metric, _) in zip(axes, METRICS, strict=True):
            for split in splits:
                series = curve(scalars, split, metric, smooth)
                if series is None:
                    continue
                name = split if len(runs) == 1 else f"{label} {split}"
                colour = colours[(i if len(runs) > 1 else SPLITS.index(split)) % len(colours)]
                ax.plot(series.index, series.values, STYLES[split], color=colour, label=name)
    for ax, (_, ylabel) in zip(axes, METRICS, strict=True):
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if ylabel.endswith("loss"):  # early losses can be 100 times the late ones
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(PlainLogFormatter())
            ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders with event files")
    parser.add_argument("--out", type=Path, help="folder for one PNG per run, named after the run "
                        "(default: RUN/curves.png)")  # fmt: skip
    parser.add_argument("--overlay", type=Path, help="draw all runs into this one PNG instead")
    parser.add_argument("--labels", nargs="+", help="names of the runs (default: folder names)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--smooth", type=int, default=1, help="running mean of the train curve")
    parser.add_argument("--title", help="figure title (default: the run's name)")
    args = parser.parse_args(argv)
    labels = args.labels or [p.resolve().name for p in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        parser.error("--labels needs one name per run folder")

    runs, dirs = {}, {}
    for label, run_dir in zip(labels, args.run_dirs, strict=True):
        try:
            runs[label], dirs[label] = read_scalars(run_dir), run_dir
        except FileNotFoundError as e:
            print(f"skipped: {e}", file=sys.stderr)  # one missing run must not lose the others
    if not runs:
        print("error: none of the folders holds TensorBoard logs", file=sys.stderr)
        return 1

    written = []
    if args.overlay:
        figures = [(args.overlay, plot(runs, args.splits, args.smooth, args.title))]
    else:
        figures = []
        for label, scalars in runs.items():
            path = args.out / f"{label}.png" if args.out else dirs[label] / "curves.png"
            figures.append((path, plot({label: scalars}, args.splits, args.smooth,
                                       args.title or label)))  # fmt: skip
    for path, fig in figures:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    print("\n".join(f"wrote {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
