"""Whole runs, timed from outside: ``python -m src.train`` of a short and a long run in
subprocesses, and the difference per step, beside a long bare loop.

The in-run timer (``scripts.bench.steps``) times blocks of a few dozen steps inside one fit. A
whole run also pays what such a block can miss: epoch boundaries, the logger's writes, garbage
collection as a long run accumulates objects. Two runs that differ only in ``trainer.max_steps``
(no validation, no test) cost the same apart from the extra steps, so the difference of their
training times, divided by the difference of their steps, is what one more step costs in a real
run. Each run is timed by the ``Milestones`` it prints, from its first training step to the end
of training (so start-up's jitter stays out), and, for reference, as a whole process.
"""

import os
import sys
from dataclasses import dataclass, field

from scripts.bench.settings import Benchmark, Setting, log
from scripts.bench.startup import ROOT, run_timed
from scripts.bench.steps import bare_block
from scripts.bench.timing import Milestones
from src.build import Run

#: The models timed as whole runs by default: those whose steps are short enough for the
#: framework's fixed cost to show (the ConvNet's 180 ms steps on a CPU would take minutes).
WHOLE_RUN_MODELS = ("linear", "mlp_numpy", "mlp")


@dataclass
class WholeRuns:
    """One model's whole-run timings, one entry per repetition (ms per step)."""

    short: int
    long: int
    project_ms: list[float] = field(default_factory=list)  # first step to end of training
    project_cpu_ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)  # whole processes, start-up included
    bare_ms: list[float] = field(default_factory=list)  # a bare loop of long - short steps
    bare_cpu_ms: list[float] = field(default_factory=list)


def time_run(bench: Benchmark, s: Setting, steps: int) -> tuple[float, float, float]:
    """Wall and CPU seconds from a ``python -m src.train`` run's first training step to its end of
    training, and the wall seconds of the whole process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    out = bench.workdir / f"whole-{s.name}-{steps}"
    cmd = [
        sys.executable,
        "-m",
        "src.train",
        *bench.overrides(s.name, []),
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={10**9}",  # no validation: steps only
        "test=false",
        f"hydra.run.dir={out}",
        f"+callbacks.milestones._target_={Milestones.__module__}.Milestones",
    ]
    _, process_s, _, output = run_timed(cmd, ROOT, env)
    stamps = Milestones.parse(output)
    if "first_step" not in stamps or "train_end" not in stamps:
        raise RuntimeError(f"{s.name}: no first step or end of training in:\n{output[-3000:]}")
    (t0, cpu0), (t1, cpu1) = stamps["first_step"], stamps["train_end"]
    return t1 - t0, cpu1 - cpu0, process_s


def measure_whole_runs(
    bench: Benchmark,
    settings: list[Setting],
    runs: dict[str, Run],
    short: int,
    long: int,
    repeats: int,
) -> dict[str, WholeRuns]:
    """For each setting: ``repeats`` x (a short run, a long run, a bare loop of the difference)."""
    results: dict[str, WholeRuns] = {}
    extra = long - short
    for r in range(repeats):
        for s in settings:
            log(f"whole runs {r + 1}/{repeats}: {s.name} ({short} and {long} steps)")
            w = results.setdefault(s.name, WholeRuns(short, long))
            short_s, short_cpu, short_process = time_run(bench, s, short)
            long_s, long_cpu, long_process = time_run(bench, s, long)
            w.project_ms.append((long_s - short_s) / extra * 1e3)
            w.project_cpu_ms.append((long_cpu - short_cpu) / extra * 1e3)
            w.process_ms.append((long_process - short_process) / extra * 1e3)
            bare_ms, bare_cpu_ms, _ = bare_block(s, runs[s.name], seed=r, n_steps=extra)
            w.bare_ms.append(bare_ms)
            w.bare_cpu_ms.append(bare_cpu_ms)
    return results
