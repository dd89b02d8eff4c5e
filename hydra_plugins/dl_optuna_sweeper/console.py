"""What a sweep process prints: one line when a trial starts, one when it ends, and at the end the
best trials as a table and where the results are.

The lines go to stdout with the time, apart from Python logging: the jobs' own log lines go to
their ``train.log`` (see ``report.quiet_console``), and these lines are the search's story.
"""

import math
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

TOP = 5


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def number(value: Any) -> str:
    """A value as a person reads it: floats to 3 significant digits, the rest as they are."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def metric(value: float | None) -> str:
    """An objective value to 4 decimals (the float32 noise of a metric hidden)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def started(trial: FrozenTrial | optuna.Trial, position: int, n_trials: int) -> str:
    """``trial 3 (4/20): model.dropout=0.311 optimizer=adam ...``: the searched values only."""
    params = " ".join(f"{k}={number(v)}" for k, v in trial.params.items())
    return f"trial {trial.number} ({position}/{n_trials}): {params}"


def ended(trial_number: int, outcome: str, best: FrozenTrial | None) -> str:
    """``trial 3 completed, val/acc 0.5752 | best so far 0.5752 (trial 3)``."""
    so_far = "no trial completed yet"
    if best is not None:
        so_far = f"best so far {metric(best.value)} (trial {best.number})"
    return f"trial {trial_number} {outcome} | {so_far}"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def top_table(study: optuna.Study, objective: str, top: int = TOP) -> str:
    """The ``top`` best completed trials as a plain-text table, best first."""
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    counts = ", ".join(f"{n} {s.name.lower()}" for s, n in states.items() if n)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=maximize)
    title = f"study {study.study_name}: {len(trials)} trials ({counts or 'none'})"
    if not done:
        return f"{title}; none completed"
    keys = list(dict.fromkeys(k for t in done[:top] for k in t.params))
    header = ["trial", objective, *keys]
    rows = [[str(t.number), metric(t.value), *(number(t.params.get(k, "")) for k in keys)]
            for t in done[:top]]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join([f"{title}; the best {len(rows)}:", *lines])
