"""Who runs a trial, and whether it still does: the owner record, liveness and the heartbeat.

A sweep process writes itself (host, pid, its start time, a heartbeat) into each trial it asks,
and the time into its running trials every heartbeat. A RUNNING trial is taken for dead, failed
and replaced, when its process is gone: on this machine, its pid no longer runs (or runs another
program); elsewhere, or with no owner recorded at all (a process killed between asking the trial
and writing its owner), when its last sign of life (heartbeat, else its start) is older than the
grace period ``stale_after_s``.
"""

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from optuna.trial import FrozenTrial

HEARTBEAT_S = 60.0  # at most; more often with a short grace period


def _process_start(pid: int) -> str | None:
    """The start time of a process (Linux), so that a reused pid is not taken for the owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner() -> dict[str, object]:
    """This process, as recorded on the trials it runs."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _process_start(pid),
        "heartbeat": time.time(),
    }


def is_alive(trial: FrozenTrial, stale_after_s: float) -> bool:
    """Whether the sweep process that runs ``trial`` still lives."""
    attrs = trial.user_attrs
    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        pid = int(attrs["pid"])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        start = attrs.get("pid_start")
        return start is None or _process_start(pid) == start
    last = attrs.get("heartbeat")
    if last is None:
        started = trial.datetime_start  # naive local time, as Optuna writes it
        last = started.timestamp() if started is not None else 0.0
    return time.time() - float(last) < stale_after_s


@contextlib.contextmanager
def heartbeat(write: Callable[[float], None], stale_after_s: float) -> Iterator[None]:
    """While the block runs, call ``write(time)`` every so often (4 beats per grace period, at
    most one a minute), so that other machines can tell the trials from dead ones."""
    stop = threading.Event()
    every = min(HEARTBEAT_S, stale_after_s / 4)

    def beat() -> None:
        while not stop.wait(every):
            write(time.time())

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
