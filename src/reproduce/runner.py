"""Running the reruns: ``--jobs`` child processes at a time, a progress line per run, and
``DIR/reproduce.yaml``, the record of what ran and for how long."""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import yaml

from src.reproduce.plan import ROOT, Job, Refusal, now, shown

STATE = "reproduce.yaml"  # DIR's record of this reproduction: what ran, how long
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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
