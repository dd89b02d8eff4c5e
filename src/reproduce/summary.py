"""The verdicts on the reruns, and ``DIR/reproduction.md``: the table, the machine, the package
versions and the wall times."""

import contextlib
import os
import platform
from pathlib import Path

from src.reproduce import verdicts
from src.reproduce.plan import Job, Row, installed_version, now
from src.reproduce.runner import available_cores, format_seconds
from src.run_folder import RunFolder, RunFolderError

REPORT = "reproduction.md"


def compare(rows: list[Row]) -> list[tuple[str, verdicts.RowComparison]]:
    """Each row's verdict, from the reruns' records in DIR."""
    compared = []
    for row in rows:
        pairs = []
        for job in row.jobs:
            try:
                rerun = RunFolder.open(job.out)
                metrics = rerun.metrics() if rerun.is_finished() else None
            except RunFolderError:
                metrics = None
            pairs.append((job.name, job.record.metrics(), metrics))
        compared.append((row.label, verdicts.compare_row(pairs)))
    return compared


def rerun_equals_record(job: Job) -> str:
    """ "yes", "no" or why there is nothing to compare."""
    try:
        rerun = RunFolder.open(job.out)
    except RunFolderError:
        return "not run"
    if not rerun.is_finished():
        return "did not complete"
    return "yes" if rerun.metrics() == job.record.metrics() else "no"


def machine_description(jobs: int) -> list[str]:
    threads = os.environ.get("OMP_NUM_THREADS") or max(1, available_cores() // jobs)
    return [
        f"- system: {platform.platform()}, Python {platform.python_version()}",
        f"- CPU: {cpu_model()}, {available_cores()} cores available to this process",
        f"- runs at a time: {jobs}, {threads} thread(s) each",
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_report(
    out: Path,
    argv: list[str],
    first_line: str,
    drift: list[str],
    rows: list[Row],
    compared,
    state: dict,
    jobs: int,
) -> str:
    """DIR/reproduction.md: the verdicts, the machine, the versions and the wall times."""
    devices = sorted({str(j.record.record().get("device")) for r in rows for j in r.jobs})
    rerun_devices = set()
    for row in rows:
        for job in row.jobs:
            with contextlib.suppress(RunFolderError):
                rerun_devices.add(str(RunFolder.open(job.out).record().get("device")))
    lines = [
        f"# Reproduction of {state.get('table')}",
        "",
        f"`python -m src.reproduce {' '.join(argv)}`, {now()}.",
        "",
        f"Provenance: {first_line}.",
        "",
        verdicts.markdown_table(compared),
    ]
    problems = [f"- `{label}`: {'; '.join(c.problems)}" for label, c in compared if c.problems]
    skipped = [
        f"- `{r.label}`: {', '.join(r.not_completed)} (recorded as not completed, not rerun)"
        for r in rows
        if r.not_completed
    ]
    if problems or skipped:
        lines += ["Runs not compared:", "", *problems, *skipped, ""]
    if drift:
        lines += [
            "This checkout composes the records' commands into configs that differ from the "
            f"recorded ones in: {', '.join(f'`{k}`' for k in drift[:12])}"
            + (f" and {len(drift) - 12} more" if len(drift) > 12 else "")
            + ".",
            "",
        ]
    lines += [
        "## Machine",
        "",
        *machine_description(jobs),
        f"- recorded on: {', '.join(devices)}; rerun on: {', '.join(sorted(rerun_devices)) or '–'}",
        "",
        "## Package versions",
        "",
        "| package | installed | recorded |",
        "|---|---|---|",
    ]
    recorded: dict[str, set[str]] = {}
    for row in rows:
        for job in row.jobs:
            for name, version in (job.record.record().get("versions") or {}).items():
                recorded.setdefault(name, set()).add(str(version))
    for name, versions in recorded.items():
        lines.append(f"| {name} | {installed_version(name)} | {', '.join(sorted(versions))} |")
    lines += [
        "",
        "## Runs and wall times",
        "",
        "Each run's processes (`start`, then `resume` after an interruption) and the wall time",
        "of those that ended; a killed process's time is unknown.",
        "",
        "| run | seed | metrics equal to the record's | processes | wall time |",
        "|---|---:|---|---|---:|",
    ]
    for row in rows:
        for job in row.jobs:
            segments = (state.get("runs") or {}).get(job.name, {}).get("segments", [])
            timed = [s["seconds"] for s in segments if "seconds" in s]
            kinds = ", ".join(s["how"] + ("" if "seconds" in s else " (killed)") for s in segments)
            total = format_seconds(sum(timed)) if timed else "–"
            equal = rerun_equals_record(job)
            lines.append(f"| {job.name} | {job.seed} | {equal} | {kinds or '–'} | {total} |")
    lines += ["", "Invocations of `src.reproduce` on this folder:", ""]
    for inv in state.get("invocations", []):
        lines.append(
            f"- {inv['started']}: {inv['jobs']} at a time, {inv['ran']} run(s) rerun, "
            f"{inv['skipped']} skipped, {format_seconds(inv['seconds'])}"
            + (" (interrupted)" if inv.get("interrupted") else "")
        )
    text = "\n".join(lines) + "\n"
    (out / REPORT).write_text(text)
    return text
