"""``python -m scripts.bench compare BEFORE AFTER``: the whole-run step time of two checkouts,
interleaved: did a change make training faster?

BEFORE and AFTER are two checkouts of this project (``git worktree add ../before <commit>``). For
each round, model and checkout (the checkouts' order alternates between rounds), it times whole
runs of that checkout as ``whole-runs`` does (``scripts.bench.whole_runs.extra_step_ms``: a short
and a long ``python -m src.train`` in subprocesses, first step to end of training, per extra step;
both checkouts need ``scripts/bench/timing.py``'s ``Milestones``). Medians over the rounds. Both
checkouts read the same data, with this checkout's options (``--fake``, ``--data-root``, ...).
"""

import argparse
import statistics
import tempfile
from pathlib import Path

from scripts.bench.settings import MODELS, Benchmark, log
from scripts.bench.whole_runs import extra_step_ms, parse_step_pair


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("before", type=Path, help="a checkout of this project")
    p.add_argument("after", type=Path, help="another checkout of this project")
    p.add_argument("--models", default="linear,mlp", help=f"of {','.join(MODELS)}")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", default="200,3200", help="the short and the long run's steps")


def check_arguments(args: argparse.Namespace) -> str | None:
    for tree in (args.before, args.after):
        if not (tree / "src" / "train.py").is_file():
            return f"{tree} is not a checkout of this project (no src/train.py)"
    if parse_step_pair(args.steps) is None:
        return "--steps takes two different positive step counts, e.g. 200,3200"
    if args.rounds < 1:
        return "--rounds must be positive"
    return None


def run(args: argparse.Namespace) -> str:
    """Time both checkouts' whole runs, round by round; the table of their medians."""
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    short, long = parse_step_pair(args.steps)
    results: dict[tuple[str, str], list[float]] = {(t, m): [] for m in args.models for t in trees}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        bench = Benchmark(args, Path(tmp))
        settings = [bench.setting(model) for model in args.models]
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for s in settings:
                for name in order:
                    ms, _, _ = extra_step_ms(bench, s, short, long, tree=trees[name])
                    results[(name, s.name)].append(ms)
                    log(f"round {r + 1}: {s.name} {name} {ms:.3f} ms/step")
    lines = [
        f"Whole runs of {short:,} and {long:,} steps, ms per extra step, medians of {args.rounds} "
        f"interleaved rounds; before: {trees['before'].name}, after: {trees['after'].name}.",
        "",
        "| model | before ms/step | after ms/step | after - before µs/step |",
        "|---|---:|---:|---:|",
    ]
    for model in args.models:
        b, a = (statistics.median(results[(t, model)]) for t in ("before", "after"))
        lines.append(f"| {model} | {b:.3f} | {a:.3f} | {(a - b) * 1e3:+,.0f} |")
    return "\n".join(lines)
