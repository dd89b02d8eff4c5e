"""Whether rerun runs reproduce their records: a verdict per table row (``src.reproduce``).

A row is the runs of one configuration over seeds, as RESULTS.md's tables group them. Each run's
final metrics (``run.yaml``'s ``metrics``: ``best_val/acc``, ``final_test/acc``,
``final_test/loss``) are compared with its record's, over the runs that were rerun:

- ``exact``: every metric of every run equal to the record's, to the last digit. Training on the
  CPU is deterministic in this project, so the same code and packages on the same kind of machine
  give this.
- ``within``: for every metric, the mean of the rerun runs is within
  ``max(2 * std / sqrt(n), 0.005)`` of the recorded mean, with ``std`` the recorded sample
  standard deviation over the same n runs. ``2 * std / sqrt(n)`` is about two standard errors of
  the recorded mean: a rerun whose differences act like seed noise (another CPU's float rounding,
  another library version) lands there about 95% of the time. The floor of 0.005, half a point of
  accuracy, keeps a row with a tiny spread, or a single run (no spread at all), from failing on
  rounding alone; it applies on each metric's own scale (the loss too).
- ``differs``: anything else, and any run that did not complete when rerun.
"""

import math
import statistics
from dataclasses import dataclass

EXACT, WITHIN, DIFFERS = "exact", "within", "differs"
# The order of severity: a row's verdict is its worst metric's.
SEVERITY = (EXACT, WITHIN, DIFFERS)
FLOOR = 0.005


def tolerance(recorded: list[float]) -> float:
    """How far the rerun mean may be from the mean of ``recorded`` (module docstring)."""
    if len(recorded) < 2:
        return FLOOR
    return max(2 * statistics.stdev(recorded) / math.sqrt(len(recorded)), FLOOR)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for a single value)."""
    mean = statistics.fmean(values) if values else math.nan
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass
class MetricComparison:
    """One metric of one row: recorded against rerun, over the n runs that have it in both."""

    metric: str
    recorded: list[float]
    reproduced: list[float]
    verdict: str

    @property
    def difference(self) -> float:
        return mean_std(self.reproduced)[0] - mean_std(self.recorded)[0]

    @property
    def tolerance(self) -> float:
        return tolerance(self.recorded)


@dataclass
class RowComparison:
    """A table row's verdict, the comparison of each metric, and why it differs if it does."""

    verdict: str
    metrics: list[MetricComparison]
    problems: list[str]


def compare_metric(metric: str, recorded: list[float], reproduced: list[float]) -> MetricComparison:
    """The verdict on one metric, run by run (``recorded[i]`` is ``reproduced[i]``'s record)."""
    if recorded == reproduced:
        verdict = EXACT
    else:
        difference = abs(statistics.fmean(reproduced) - statistics.fmean(recorded))
        verdict = WITHIN if difference <= tolerance(recorded) else DIFFERS
    return MetricComparison(metric, recorded, reproduced, verdict)


def compare_row(pairs: list[tuple[str, dict, dict | None]]) -> RowComparison:
    """The verdict on a row from ``(run name, recorded metrics, rerun metrics)`` per run, the rerun
    metrics None where the rerun did not complete."""
    problems = [f"{name} did not complete" for name, _, rerun in pairs if rerun is None]
    done = [(name, recorded, rerun) for name, recorded, rerun in pairs if rerun is not None]
    names = list(dict.fromkeys(k for _, recorded, _ in done for k in recorded))
    comparisons = []
    for metric in names:
        missing = [name for name, _, rerun in done if rerun.get(metric) is None]
        problems += [f"{name} has no {metric}" for name in missing]
        both = [
            (float(rec[metric]), float(rerun[metric]))
            for _, rec, rerun in done
            if rec.get(metric) is not None and rerun.get(metric) is not None
        ]
        if both:
            comparisons.append(compare_metric(metric, *map(list, zip(*both, strict=True))))
    if not done:
        problems.append("no run completed")
    verdicts = [c.verdict for c in comparisons] + [DIFFERS] * bool(problems)
    return RowComparison(max(verdicts, key=SEVERITY.index), comparisons, problems)


def format_stat(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ± {std:.4f}"


def markdown_table(rows: list[tuple[str, RowComparison]]) -> str:
    """A line per row and metric: n, recorded and rerun mean ± std, difference, tolerance and the
    metric's verdict; the row's verdict stands on its first line."""
    lines = [
        "| configuration | row | metric | n | recorded | reproduced | difference | tolerance "
        "| verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, row in rows:
        first = f"| `{label}` | **{row.verdict}** "
        for c in row.metrics:
            lines.append(
                f"{first}| {c.metric} | {len(c.recorded)} | {format_stat(c.recorded)} | "
                f"{format_stat(c.reproduced)} | {c.difference:+.4f} | {c.tolerance:.4f} | "
                f"{c.verdict} |"
            )
            first = "| | "
        if not row.metrics:
            lines.append(f"{first}| – | 0 | – | – | – | – | {row.verdict} |")
    return "\n".join(lines) + "\n"
