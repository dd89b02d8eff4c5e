"""Plot a per-layer diagnostic of several runs (``callbacks=diagnostics``) from their event files.

    python -m scripts.plot_diagnostics --stat dead_fraction --by layer \\
        --run "neg_slope 0=outputs/runs/A" --run "neg_slope 0.02=outputs/runs/B" --out dead.png

``--stat`` is a statistic of ``src/lit/diagnostics.py`` (tags ``diagnostics/<stat>/layer<i>``):
grad_norm, weight_norm, update_ratio, activation_mean, activation_std or dead_fraction.
``--by layer`` draws a panel per layer with a line per run (compare runs layer by layer);
``--by run`` a panel per run with a line per layer (compare layers within a run). ``--log`` uses a
logarithmic y axis; ``--smooth N`` plots the running mean of N logged points; ``--max-step`` cuts
runs of unequal length to a common range.
"""

import argparse
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from src.scalars import read_scalars

STATS = (
    "grad_norm",
    "weight_norm",
    "update_ratio",
    "activation_mean",
    "activation_std",
    "dead_fraction",
)
LABELS = {
    "grad_norm": "gradient norm ||dL/dW||",
    "weight_norm": "weight norm ||W||",
    "update_ratio": "update / weight norm",
    "activation_mean": "activation mean",
    "activation_std": "activation std",
    "dead_fraction": "fraction of dead units",
}


def read_layers(run: Path, stat: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(steps, values) of ``diagnostics/<stat>/layer<i>`` for every layer i that a run folder's
    event files hold (``src.scalars.read_scalars``); {} if it has none."""
    try:
        scalars = read_scalars(run)
    except FileNotFoundError:
        return {}
    pattern = re.compile(rf"diagnostics/{stat}/layer(\d+)$")
    matches = {tag: pattern.match(tag) for tag in scalars}
    layers = {int(m.group(1)): scalars[tag] for tag, m in matches.items() if m}
    return {
        i: (np.array(list(points)), np.array(list(points.values())))
        for i, points in sorted(layers.items())
    }


def smooth(values: np.ndarray, n: int) -> np.ndarray:
    """Running mean over ``n`` points (shorter at the start)."""
    if n <= 1:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), n)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - n, 0)]) / counts


def parse_runs(specs: list[str]) -> dict[str, Path]:
    runs = {}
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"error: --run takes LABEL=FOLDER, got {spec!r}")
        if not Path(folder).is_dir():
            raise SystemExit(f"error: --run {spec!r}: no such folder")
        runs[label] = Path(folder)
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stat", required=True, choices=STATS)
    p.add_argument("--run", action="append", required=True, help="LABEL=FOLDER (repeatable)")
    p.add_argument("--by", choices=("layer", "run"), default="layer")
    p.add_argument("--log", action="store_true", help="logarithmic y axis")
    p.add_argument("--smooth", type=int, default=1, help="running mean over this many points")
    p.add_argument(
        "--max-step", type=int, help="draw steps up to this one (runs of unequal length)"
    )
    p.add_argument("--title", default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    runs = parse_runs(args.run)
    data = {label: read_layers(folder, args.stat) for label, folder in runs.items()}
    if empty := [label for label, layers in data.items() if not layers]:
        raise SystemExit(f"error: no diagnostics/{args.stat} in the events of {empty}")

    if args.by == "layer":
        panels = sorted({i for layers in data.values() for i in layers})
        lines = {i: {lab: layers.get(i) for lab, layers in data.items()} for i in panels}
        titles = {i: f"layer {i}" for i in panels}
    else:
        panels = list(data)
        lines = {lab: {f"layer {i}": c for i, c in data[lab].items()} for lab in panels}
        titles = {lab: lab for lab in panels}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 3.2), sharey=True, squeeze=False
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        for name, curve in lines[panel].items():
            if curve is not None:
                steps, values = curve
                if args.max_step is not None:
                    steps, values = steps[steps <= args.max_step], values[steps <= args.max_step]
                ax.plot(steps, smooth(values, args.smooth), label=name, linewidth=1.2)
        ax.set_title(titles[panel])
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if args.log:
            ax.set_yscale("log")
    axes[0][0].set_ylabel(LABELS[args.stat])
    axes[0][-1].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
