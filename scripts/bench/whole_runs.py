"""``python -m scripts.bench whole-runs``: whole ``python -m src.train`` runs timed from outside,
their start-up, and optionally a multirun.

The in-run timer (``scripts.bench.steps``) times blocks of a few dozen steps inside one fit. A
whole run also pays what such a block can miss: epoch boundaries, the logger's writes, garbage
collection as a long run accumulates objects. Two runs that differ only in ``trainer.max_steps``
(no validation, no test) cost the same apart from the extra steps, so the difference of their
training times, divided by the difference of their steps, is what one more step costs in a real
run (``extra_step_ms``). Each run is timed by the ``Milestones`` it prints, from its first training
step to the end of training (so start-up's jitter stays out), and, for reference, as a whole
process. Beside it, a bare loop of as many steps; project minus bare is the framework's fixed cost
per step. ``scripts.bench.fixed_cost`` and ``scripts.bench.compare`` time whole runs through
``extra_step_ms`` too.
"""

import argparse
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.multirun import measure_multirun
from scripts.bench.report import render_whole_runs
from scripts.bench.settings import MODELS, Benchmark, Setting, log
from scripts.bench.startup import ROOT, run_timed, startup
from scripts.bench.steps import bare_block
from scripts.bench.timing import Milestones

#: The models timed by default: those whose steps are short enough for the framework's fixed
#: cost to show (the ConvNet's 180 ms steps on a CPU would take minutes).
WHOLE_RUN_MODELS = ("linear", "mlp_numpy", "mlp")
_RUN_NUMBER = itertools.count()  # every run gets a folder of its own: a run folder is never reused


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


def time_run(bench: Benchmark, s: Setting, steps: int, tree: Path = ROOT) -> tuple[float, ...]:
    """Wall and CPU seconds from the first training step of a ``python -m src.train`` run of
    checkout ``tree`` to its end of training, and the wall seconds of the whole process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HYDRA_FULL_ERROR": "1"}
    out = bench.workdir / f"whole-{next(_RUN_NUMBER)}-{tree.name}-{s.name}-{steps}"
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
    _, process_s, _, output = run_timed(cmd, tree, env)
    stamps = Milestones.parse(output)
    if "first_step" not in stamps or "train_end" not in stamps:
        raise RuntimeError(f"{s.name}: no first step or end of training in:\n{output[-3000:]}")
    (t0, cpu0), (t1, cpu1) = stamps["first_step"], stamps["train_end"]
    return t1 - t0, cpu1 - cpu0, process_s


def extra_step_ms(
    bench: Benchmark, s: Setting, short: int, long: int, tree: Path = ROOT
) -> tuple[float, float, float]:
    """What one more training step of a whole run costs: wall and CPU ms from first step to end
    of training, and wall ms of whole processes; from a run of ``short`` and one of ``long``
    steps of checkout ``tree``."""
    short_run, long_run = time_run(bench, s, short, tree), time_run(bench, s, long, tree)
    return tuple((b - a) / (long - short) * 1e3 for a, b in zip(short_run, long_run, strict=True))


def measure_whole_runs(
    bench: Benchmark, settings: list[Setting], short: int, long: int, repeats: int
) -> dict[str, WholeRuns]:
    """For each setting: ``repeats`` x (a short run, a long run, a bare loop of the difference)."""
    results: dict[str, WholeRuns] = {}
    tensors = {s.name: bench.training_tensors(s) for s in settings} if repeats else {}
    for r in range(repeats):
        for s in settings:
            log(f"whole runs {r + 1}/{repeats}: {s.name} ({short} and {long} steps)")
            w = results.setdefault(s.name, WholeRuns(short, long))
            wall, cpu, process = extra_step_ms(bench, s, short, long)
            w.project_ms.append(wall)
            w.project_cpu_ms.append(cpu)
            w.process_ms.append(process)
            bare_ms, bare_cpu_ms, _ = bare_block(s, tensors[s.name], seed=r, n_steps=long - short)
            w.bare_ms.append(bare_ms)
            w.bare_cpu_ms.append(bare_cpu_ms)
    return results


def parse_step_pair(text: str) -> tuple[int, int] | None:
    """``"200,3200"`` -> (200, 3200): two different positive step counts, or None."""
    try:
        steps = sorted(int(n) for n in text.split(","))
    except ValueError:
        return None
    return (steps[0], steps[1]) if len(steps) == 2 and 0 < steps[0] < steps[1] else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", default=",".join(WHOLE_RUN_MODELS), help=f"of {','.join(MODELS)}; empty: none"
    )
    p.add_argument(
        "--steps",
        default="200,3200",
        help="the short and the long run's max_steps; their difference gives ms per step",
    )
    p.add_argument("--repeats", type=int, default=2, help="short/long pairs per model")
    p.add_argument("--startup-repeats", type=int, default=2, help="0 skips the start-up timing")
    p.add_argument(
        "--multirun",
        type=int,
        default=0,
        metavar="JOBS",
        help="also time a JOBS-job multirun of the default MLP against one run (0: skip)",
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one sentence, or None."""
    if parse_step_pair(args.steps) is None:
        return "--steps takes two different positive step counts, e.g. 200,3200"
    if args.repeats < 0 or args.startup_repeats < 0 or args.multirun < 0:
        return "--repeats, --startup-repeats and --multirun must not be negative"
    return None


def run(args: argparse.Namespace) -> str:
    """Time the models' whole runs, the start-up, and the multirun if asked."""
    began = time.perf_counter()
    short, long = parse_step_pair(args.steps)
    with tempfile.TemporaryDirectory(prefix="bench-whole-runs-") as tmp:
        bench = Benchmark(args, Path(tmp))
        settings = [bench.setting(name) for name in args.models]
        whole = measure_whole_runs(bench, settings, short, long, args.repeats)
        log("start-up")
        starts = startup(bench, args.startup_repeats) if args.startup_repeats else None
        multirun = measure_multirun(bench, args.multirun) if args.multirun else None
    return render_whole_runs(args, whole, starts, multirun, time.perf_counter() - began)
