"""Figures of a sweep's study: optimization history, parameter importances, and the intermediate
values (each trial's validation curve as reported to the study, showing where pruning cut).

``python -m scripts.summarize`` calls ``write_study_figures`` on a sweep folder that holds the
sweeper's ``optimization_results.yaml`` (which names the study and its storage, relative to the
folder).
"""

import logging
import warnings
from pathlib import Path

import yaml

from .errors import SweepError
from .results import RESULTS, load_study

log = logging.getLogger(__name__)

FIGURES = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "intermediate_values": "plot_intermediate_values",
}


def write_study_figures(sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write ``study_<figure>.png`` for each figure of FIGURES; return the files written.

    A figure the study cannot give yet (e.g. importances with fewer than two finished trials) is
    skipped with a warning. A folder without ``optimization_results.yaml`` gives none.
    """
    results_path = sweep_dir / RESULTS
    if not results_path.is_file():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as plots

    try:
        study = load_study(sweep_dir)  # its paths are resolved against the sweep folder
    except (SweepError, KeyError, OSError, yaml.YAMLError) as e:
        log.warning(f"no study figures: the study of {sweep_dir} cannot be read ({e})")
        return []
    out_dir = out_dir or sweep_dir
    written = []
    for name, function in FIGURES.items():
        try:
            with warnings.catch_warnings():  # the matplotlib backend is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = getattr(plots, function)(study)
        except (ValueError, RuntimeError) as e:
            log.warning(f"no {name} figure: {e}")
            continue
        path = out_dir / f"study_{name}.png"
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        legend = getattr(ax, "get_legend", lambda: None)()
        if legend is not None and len(legend.get_texts()) > 10:  # one entry per trial: unreadable
            legend.remove()
            ax.set_title(
                f"{ax.get_title()}: {len(study.trials)} trials (a line that stops was pruned)"
            )
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        figure.savefig(path, dpi=100, bbox_inches="tight")  # a legend outside the axes, whole
        plt.close(figure)
        written.append(path)
    return written
