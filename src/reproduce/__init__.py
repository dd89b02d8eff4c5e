"""Rerun one RESULTS table's runs from their records and say whether they reproduce.

    python -m src.reproduce results/NAME [--jobs N] [--runs K] [--out DIR] [key=value ...]

For every completed run recorded under ``results/NAME/`` the command is rebuilt from its record:
the overrides it was started with (``.hydra/overrides.yaml``, which fix its config-group choices
and settings) and its seed. The keys that say where things are on the machine that made it
(``data.root``, ``paths.*``) are dropped, so this machine's config applies; the trailing
``key=value`` overrides set them here (``data.root=/path/to/folder``) and are added to every run.

Each run is rerun with ``python -m src.train`` into ``DIR/<its path under results/NAME>``
(``DIR`` is ``outputs/reproduce/NAME`` by default), ``--jobs`` processes at a time, which share
the cores (``OMP_NUM_THREADS`` = cores // jobs unless set). Rerunning the same command continues:
finished runs are skipped, interrupted ones continue from their last checkpoint
(``python -m src.train resume=...``). ``--runs K`` reruns only the first K seeds of each row.

Rows are grouped as ``src.results`` groups RESULTS.md's tables (configs equal but for the
seed), and each row gets a verdict, ``exact``, ``within`` or ``differs``
(``src.reproduce.verdicts`` says how). The table, the machine, the package versions and the wall
times are written to ``DIR/reproduction.md``; the exit status is 1 if a row differs, else 0.

The first line says whether the records come from this commit and with these package versions.
A record whose command this checkout cannot compose into a config is refused before anything
runs: one sentence, exit status 1.

The modules: ``plan`` (what the records ask for, whether this checkout can build it, what DIR
holds), ``runner`` (the child processes), ``verdicts`` (the rules) and ``summary`` (the report).
"""

import argparse
import os
import sys
import time
from pathlib import Path

from src.reproduce import verdicts
from src.reproduce.plan import Refusal, check_buildable, now, plan_job, provenance, read_rows, shown
from src.reproduce.runner import Runner, read_state, write_state
from src.reproduce.summary import REPORT, compare, write_report


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """Bad arguments: one sentence and exit status 1, like every other refusal."""
        self.exit(1, f"error: {message} (python -m src.reproduce --help)\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m src.reproduce",
        description="Rerun one RESULTS table's runs from their records; say whether they "
        "reproduce.",
    )
    parser.add_argument("table", type=Path, help="a table's folder of records, e.g. results/NAME")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--runs", type=int, help="rerun only the first K seeds of each row")
    parser.add_argument(
        "--out", type=Path, help="where to rerun them (default outputs/reproduce/NAME)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="this machine's keys, e.g. data.root=/path (added to every run)",
    )
    args = parser.parse_intermixed_args(argv)
    if args.jobs < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--jobs and --runs take a positive number")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"{bad[0]!r} is not a key=value override")
    if args.out is None:
        args.out = Path("outputs") / "reproduce" / args.table.resolve().name
    args.out = Path(os.path.abspath(args.out))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    argv = sys.argv[1:] if argv is None else argv
    try:
        rows = read_rows(args.table, args.out, args.runs)
        jobs = [job for row in rows for job in row.jobs]
        if not jobs:
            raise Refusal(f"{shown(args.table)} records no completed run to rerun")
        drift = check_buildable(jobs, args.overrides)
        state = read_state(args.out)
        for job in jobs:
            plan_job(job)
            job.segments = (state.get("runs") or {}).get(job.name, {}).get("segments", [])
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    first_line = f"{shown(args.table)}: {provenance(jobs)}"
    print(first_line, flush=True)
    if drift:
        print(
            f"note: this checkout's configs differ from the recorded ones in {len(drift)} "
            f"key(s): {', '.join(drift[:6])}{' ...' if len(drift) > 6 else ''}"
        )
    state.setdefault("table", shown(args.table))
    todo = [job for job in jobs if job.how != "skip"]
    print(
        f"{len(jobs)} run(s) in {len(rows)} row(s): {len(jobs) - len(todo)} finished before, "
        f"{len(todo)} to run, {args.jobs} at a time into {shown(args.out)}",
        flush=True,
    )
    started, clock = now(), time.monotonic()
    write_state(args.out, state)  # first, so that DIR is known as a reproduction from now on
    runner = Runner(args.out, state, args.jobs, args.overrides, len(jobs))
    runner.run(jobs)
    state.setdefault("invocations", []).append(
        {
            "started": started,
            "jobs": args.jobs,
            "ran": len(todo),
            "skipped": len(jobs) - len(todo),
            "seconds": round(time.monotonic() - clock, 1),
            "interrupted": runner.stopping,
        }
    )
    write_state(args.out, state)
    if runner.stopping:
        print(f"interrupted; rerun the same command to continue ({shown(args.out)})")
        return 130
    compared = compare(rows)
    write_report(args.out, argv, first_line, drift, rows, compared, state, args.jobs)
    print()
    print(verdicts.markdown_table(compared))
    for label, row in compared:
        if row.problems:
            print(f"`{label}` differs: {'; '.join(row.problems)}")
    counts = {v: sum(row.verdict == v for _, row in compared) for v in verdicts.SEVERITY}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    print(f"{summary}; written to {shown(args.out / REPORT)}")
    return 1 if counts[verdicts.DIFFERS] else 0
