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

Rows are grouped as ``scripts/report.py`` groups RESULTS.md's tables (configs equal but for the
seed), and each row gets a verdict, ``exact``, ``within`` or ``differs`` (``src.verdicts`` says
how). The table, the machine, the package versions and the wall times are written to
``DIR/reproduction.md``; the exit status is 1 if a row differs, else 0.

The first line says whether the records come from this commit and with these package versions.
A record whose command this checkout cannot compose into a config is refused before anything
runs: one sentence, exit status 1.
"""

import argparse
import contextlib
import ctypes
import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from src import run_folder, verdicts
from src.config import compose
from src.run_folder import RunFolder, RunFolderError, find_runs
from src.targets import UntrustedTargetError

ROOT = Path(__file__).resolve().parents[1]
STATE = "reproduce.yaml"  # DIR's record of this reproduction: what ran, how long
REPORT = "reproduction.md"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Refusal(ValueError):
    """Input that cannot be reproduced as asked; the message is one sentence."""


def load_report_script():
    """``scripts/report.py``, whose grouping of runs into table rows this reuses (scripts/ is not
    a package)."""
    spec = importlib.util.spec_from_file_location("report", ROOT / "scripts" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_report_script()


@dataclass
class Job:
    """One recorded run and how it is rerun."""

    record: RunFolder
    name: str  # its path under the table folder, and under DIR
    seed: int
    settings: list[str]  # the record's overrides less the machine's keys, then seed=
    out: Path
    how: str = ""  # "skip", "resume" or "start", decided by ``plan``
    segments: list[dict] = field(default_factory=list)

    def command(self, extra: list[str]) -> list[str]:
        """The ``src.train`` arguments that rerun it now (``how`` decides start or resume)."""
        if self.how == "resume":
            # The run's saved config holds everything else; added callbacks (+key) stay in it.
            return [f"resume={self.out}", *[o for o in extra if not o.startswith(("+", "~"))]]
        return [*self.settings, *extra, f"hydra.run.dir={self.out}"]


@dataclass
class Row:
    label: str
    jobs: list[Job]
    not_completed: list[str]  # recorded runs that did not complete: never rerun


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the current folder when under it."""
    path = Path(os.path.abspath(path))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def settings_of(record: RunFolder) -> tuple[list[str], int | None]:
    """The record's overrides without the machine's keys, its ``seed=`` last; and the seed.

    A run started without ``seed=`` gets the seed of its saved config, if this checkout can open
    that (its targets still exist); else this checkout's default seed applies.
    """
    overrides = record.overrides()
    kept = [o for o in overrides if not report.NOT_SETTINGS.match(o)]
    seeds = [o.split("=", 1)[1] for o in overrides if o.startswith("seed=")]
    if seeds:
        seed = yaml.safe_load(seeds[-1])
    else:
        try:
            seed = record.config().get("seed")
        except UntrustedTargetError:
            return kept, None
    return [*kept, f"seed={seed}"], seed


def read_rows(table: Path, out: Path, first_seeds: int | None) -> list[Row]:
    """The table's rows and the jobs that rerun them; refuses a folder that holds no runs."""
    if not table.is_dir():
        raise Refusal(f"{shown(table)} is not a folder; give a table's folder, e.g. results/NAME")
    folders = find_runs(table)
    if not folders:
        raise Refusal(
            f"{shown(table)} holds no run records (.hydra/ and run.yaml, as src.train writes "
            "them); give a table's folder, e.g. results/NAME"
        )
    by_path = {f.path.resolve(): f for f in folders}
    rows = []
    for group in report.group_by_config(report.find_runs(table)):
        label = report.summarize_group(group)["settings"]
        completed, other = [], []
        for run in group:
            folder = by_path.get(Path(run["dir"]).resolve())
            if folder is None:
                continue  # report.py counts it as a run, the run folder reader does not
            name = folder.path.relative_to(table).as_posix()
            if folder.status != "completed":
                other.append(name)
                continue
            settings, seed = settings_of(folder)
            completed.append(Job(folder, name, seed, settings, out / name))
        completed.sort(key=lambda job: (job.seed is None, job.seed or 0))
        rows.append(Row(label, completed[:first_seeds], other))
    return rows


def check_buildable(jobs: list[Job], extra: list[str]) -> list[str]:
    """Refuse a record whose command this checkout cannot compose; return the config keys in
    which this checkout's composition differs from the records' (another code version)."""
    drift: dict[str, None] = {}
    for job in jobs:
        try:
            cfg = compose([*job.settings, *extra])
        except Exception as e:  # Hydra's composition errors: unknown option, key or syntax
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise Refusal(
                f"{shown(job.record.path)}: this checkout cannot build the record's config "
                f"(python -m src.train {' '.join(job.settings)}): {reason}"
            ) from None
        choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
        recorded_choices = {
            k: v for k, v in job.record.choices().items() if not k.startswith("hydra")
        }
        composed = OmegaConf.to_container(cfg, resolve=False)
        composed.pop("hydra", None)
        try:  # the saved config, if this checkout can open it; the allow-list is the local one
            saved = job.record.config(trusted=cfg.get("trusted_targets") or [])
        except UntrustedTargetError as e:
            drift[f"the saved config's targets ({unopenable(e)})"] = None
        else:
            for key in config_differences(OmegaConf.to_container(saved), composed):
                drift[key] = None
        for group in sorted(set(choices) | set(recorded_choices)):
            if choices.get(group) != recorded_choices.get(group) and recorded_choices:
                drift[f"{group} (config group)"] = None
    return list(drift)


def unopenable(error: UntrustedTargetError) -> str:
    """The reason in ``RunFolder.config``'s refusal, without the path and the advice."""
    reason = str(error).split(" is refused: ", 1)[-1]
    return reason.split(";", 1)[0]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(recorded: dict, composed: dict) -> list[str]:
    """The keys, outside the machine's, whose values differ between two configs."""
    old, new = flatten(recorded), flatten(composed)
    machine = re.compile(r"^(data\.root|paths\.)")
    return [
        k
        for k in sorted(set(old) | set(new))
        if old.get(k, "<absent>") != new.get(k, "<absent>") and not machine.match(k)
    ]


def provenance(jobs: list[Job]) -> str:
    """One line: the records' commits and package versions against this checkout's."""
    here = run_folder.git_state()
    commits = sorted({str((job.record.record().get("git") or {}).get("commit")) for job in jobs})
    head = here.get("commit") or "unknown"
    if commits == [head]:
        code = f"records made at this commit ({head[:7]})"
    else:
        code = (
            f"records made at commit {', '.join(c[:7] for c in commits)}, "
            f"this checkout is {head[:7]}: the code may differ"
        )
    if here.get("dirty"):
        code += " (with uncommitted changes here)"
    differ = {}
    for job in jobs:
        for name, recorded in (job.record.record().get("versions") or {}).items():
            installed = installed_version(name)
            if installed != str(recorded):
                differ.setdefault(name, (installed, set()))[1].add(str(recorded))
    if differ:
        packages = "; installed versions differ from the records: " + ", ".join(
            f"{name} {installed} (recorded {', '.join(sorted(recorded))})"
            for name, (installed, recorded) in differ.items()
        )
    else:
        packages = "; installed versions as recorded"
    return code + packages


def installed_version(name: str) -> str | None:
    if name == "python":
        return platform.python_version()
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def read_state(out: Path) -> dict:
    """DIR's reproduce.yaml; refuses a non-empty DIR that is not a reproduction."""
    path = out / STATE
    if path.is_file():
        return yaml.safe_load(path.read_text()) or {}
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Refusal(
            f"{shown(out)} is not a reproduction folder (no {STATE}); give an empty or new --out"
        )
    return {}


def write_state(out: Path, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{STATE}.tmp"
    tmp.write_text(yaml.safe_dump(state, sort_keys=False))
    os.replace(tmp, out / STATE)


def plan(job: Job) -> None:
    """Skip, resume or start ``job``, from what its folder in DIR holds."""
    if not job.out.exists():
        job.how = "start"
        return
    try:
        rerun = RunFolder.open(job.out)
    except RunFolderError:
        job.how = "start"  # killed before Hydra wrote the run's config: nothing to continue
        return
    if rerun.overrides()[: len(job.settings)] != job.settings:
        raise Refusal(
            f"{shown(job.out)} holds a run of another command than {shown(job.record.path)}'s; "
            "remove it or give another --out"
        )
    if rerun.is_finished():
        job.how = "skip"
    elif rerun.last_checkpoint.is_file():
        job.how = "resume"
    else:
        job.how = "start"  # stopped before its first checkpoint


def die_with_parent() -> None:
    """In a child: get SIGTERM when src.reproduce dies, even of SIGKILL (Linux), so that the run
    saves its checkpoint and stops instead of running on unwatched."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Runner:
    """Runs jobs ``jobs`` at a time in child processes; a progress line per run."""

    def __init__(self, out: Path, state: dict, jobs: int, extra: list[str], total: int):
        self.out, self.state, self.jobs, self.extra, self.total = out, state, jobs, extra, total
        self.done = 0
        self.stopping = False
        self.env = child_environment(jobs)

    def say(self, job: Job, text: str) -> None:
        print(f"[{self.done}/{self.total}] {job.name} (seed {job.seed}): {text}", flush=True)

    def run(self, jobs: list[Job]) -> None:
        pending, running = deque(jobs), {}
        previous = {s: signal.signal(s, self.stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while pending or running:
                while pending and len(running) < self.jobs and not self.stopping:
                    job = pending.popleft()
                    if job.how == "skip":
                        self.done += 1
                        self.say(job, "finished in an earlier reproduction, skipped")
                        continue
                    running[self.start(job)] = (job, time.monotonic())
                if self.stopping and not running:
                    break
                for process, (job, started) in list(running.items()):
                    if process.poll() is not None:
                        del running[process]
                        self.finish(job, process.returncode, time.monotonic() - started)
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self, signum, frame) -> None:
        """Start nothing more; the running children stop at their next step, checkpointed (a
        terminal's Ctrl-C reaches them directly, a SIGTERM to this process is passed on)."""
        if not self.stopping:
            print("stopping: the running runs save a checkpoint and stop", flush=True)
        self.stopping = True
        if signum == signal.SIGTERM:
            for process in getattr(self, "_children", []):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    def start(self, job: Job) -> subprocess.Popen:
        if job.how == "start" and job.out.exists():
            shutil.rmtree(job.out)  # a start that left no checkpoint: begin again, cleanly
        job.out.mkdir(parents=True, exist_ok=True)
        args = job.command(self.extra)
        verb = "resumed" if job.how == "resume" else "started"
        self.say(job, f"{verb}: python -m src.train {' '.join(args)}")
        log = open(job.out / "reproduce.log", "a")  # noqa: SIM115 (closed with the child)
        process = subprocess.Popen(
            [sys.executable, "-m", "src.train", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            preexec_fn=die_with_parent,
        )
        log.close()
        self._children = [*getattr(self, "_children", []), process]
        job.segments.append({"how": job.how, "started": now()})
        self.save(job)
        return process

    def finish(self, job: Job, returncode: int, seconds: float) -> None:
        self.done += 1
        job.segments[-1].update(seconds=round(seconds, 1), exit=returncode)
        self.save(job)
        if returncode == 0:
            self.say(job, f"completed in {format_seconds(seconds)}")
        elif returncode == 130:
            self.say(job, f"interrupted after {format_seconds(seconds)}, checkpointed")
        elif self.stopping:
            self.say(job, f"stopped (exit {returncode}) after {format_seconds(seconds)}")
        else:
            self.say(job, f"failed (exit {returncode}): {last_line(job.out / 'reproduce.log')}")

    def save(self, job: Job) -> None:
        self.state.setdefault("runs", {})[job.name] = {"segments": job.segments}
        write_state(self.out, self.state)


def child_environment(jobs: int) -> dict[str, str]:
    """This environment, this checkout's ``src`` first, and the cores shared by ``jobs`` runs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    threads = str(max(1, available_cores() // jobs))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    return env


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1].strip() if lines else "no output"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------------------------------------
# Comparing and reporting
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


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
            plan(job)
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


if __name__ == "__main__":
    sys.exit(main())
