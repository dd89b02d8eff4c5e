"""The sweep folder's ``optimization_results.yaml``: written by the sweeper, read by tools.

It names the study (its storage and name), the best trial so far, the trials by state and the
compute. The paths in it are relative to the sweep folder (the journal, ``best_job_dir``), so a
sweep folder that is copied or moved still reads; ``read`` resolves them against the folder.
"""

import os
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from .study import (
    DEFAULT_JOURNAL,
    JOURNAL_PREFIX,
    journal_path,
    open_storage,
    portable_url,
    resolve_url,
)

RESULTS = "optimization_results.yaml"


def write(
    sweep_dir: Path,
    study: optuna.Study,
    url: str,
    n_trials: int,
    compute: dict[str, Any],
) -> Path:
    """Write the results of ``study`` into ``sweep_dir`` (atomically: other processes write it
    too); return the file."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": portable_url(url, sweep_dir),
        "direction": study.direction.name.lower(),
        "n_trials": n_trials,
        "trials": {k: v for k, v in states.items() if v},
    }
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
        results.update(
            best_trial=best.number,
            best_params=dict(best.params),
            best_value=best.value,
            best_job_dir=job_dir(best),
        )
    results["compute"] = compute
    path = sweep_dir / RESULTS
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(results)))
    os.replace(tmp, path)  # never half a file
    return path


def job_dir(trial: FrozenTrial) -> str:
    """A trial's job folder, relative to the sweep folder (its number if not recorded)."""
    return str(trial.user_attrs.get("job_dir", trial.number))


def read(sweep_dir: Path) -> dict[str, Any]:
    """A sweep folder's results with ``storage`` and ``best_job_dir`` resolved against it.

    Results written before these paths were relative name absolute ones; a journal file named
    there that is gone while the sweep folder has its own journal is read from the folder.
    """
    results = yaml.safe_load((sweep_dir / RESULTS).read_text())
    storage = resolve_url(str(results["storage"]), sweep_dir)
    named = journal_path(storage)
    if named is not None and not named.exists() and (sweep_dir / DEFAULT_JOURNAL).is_file():
        storage = f"{JOURNAL_PREFIX}{(sweep_dir / DEFAULT_JOURNAL).resolve()}"
    results["storage"] = storage
    if results.get("best_job_dir") is not None:
        results["best_job_dir"] = str((sweep_dir / str(results["best_job_dir"])).resolve())
    return results


def load_study(sweep_dir: Path) -> optuna.Study:
    """The study of a sweep folder, through its results file."""
    results = read(sweep_dir)
    storage = open_storage(results["storage"])
    return optuna.load_study(study_name=results["study_name"], storage=storage)


def compute(
    trials: list[FrozenTrial], max_steps: int | None, sweeper_s_per_trial: float
) -> dict[str, Any]:
    """Steps trained against trials x max_steps, and seconds per trial: training, the reports of
    the job, and the sweeper's own work (measured, not estimated)."""
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    steps = sum(max(t.intermediate_values, default=0) for t in ended)

    def mean(key: str) -> float | None:
        values = [t.user_attrs[key] for t in ended if key in t.user_attrs]
        return round(sum(values) / len(values), 4) if values else None

    report_s, train_s = mean("report_s"), mean("train_s")
    out: dict[str, Any] = {
        "trials_ended": len(ended),
        "steps_trained": int(steps),
        "steps_budget": int(max_steps) * len(ended) if max_steps and max_steps > 0 else None,
        "train_s_per_trial": train_s,
        "job_s_per_trial": mean("job_s"),
        "report_s_per_trial": report_s,
        "sweeper_s_per_trial": round(sweeper_s_per_trial, 4),
    }
    if train_s:
        out["overhead_share"] = round((sweeper_s_per_trial + (report_s or 0.0)) / train_s, 5)
    return out
