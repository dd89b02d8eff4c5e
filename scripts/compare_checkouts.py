"""Whole-run step time of two checkouts, interleaved: did a change make training faster?

    python scripts/compare_checkouts.py BEFORE AFTER [--models linear,mlp] [--rounds 4]
        [--steps 200,3200] [--data-root data] [--threads 1]

BEFORE and AFTER are two checkouts of this project (``git worktree add ../before <commit>``).
For each round, model and checkout (the checkouts' order alternates between rounds), it runs
``python -m src.train`` of the short and the long step count in a subprocess of that checkout (no
validation, no test), and takes the difference of their training times (first step to end of
training, printed by ``scripts.bench.timing.Milestones``, which both checkouts need) per extra step.
Medians over the rounds. Both checkouts read the same data.
"""

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.settings import MODELS  # noqa: E402
from scripts.bench.timing import Milestones  # noqa: E402


def training_seconds(tree: Path, model: str, steps: int, args: argparse.Namespace) -> float:
    threads = str(args.threads)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    cmd = [
        sys.executable,
        "-m",
        "src.train",
        *MODELS[model],
        f"paths.data_dir={args.data_root}",
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=1000000000",
        "test=false",
        f"hydra.run.dir={args.workdir / f'{tree.name}-{model}-{steps}'}",
        f"+callbacks.milestones._target_={Milestones.__module__}.Milestones",
    ]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    stamps = Milestones.parse(done.stdout)
    if done.returncode or "train_end" not in stamps:
        raise SystemExit(f"error: {' '.join(cmd)} in {tree} failed:\n{done.stderr[-2000:]}")
    return stamps["train_end"][0] - stamps["first_step"][0]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--models", default="linear,mlp")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", default="200,3200")
    p.add_argument("--data-root", default="data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("outputs/compare_checkouts"))
    args = p.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for tree in trees.values():
        if not (tree / "src" / "train.py").is_file():
            p.error(f"{tree} is not a checkout of this project (no src/train.py)")
    models = [m for m in args.models.split(",") if m]
    if unknown := [m for m in models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    short, long = sorted(int(n) for n in args.steps.split(","))
    args.data_root = str(Path(args.data_root).resolve())
    results: dict[tuple[str, str], list[float]] = {(t, m): [] for m in models for t in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for model in models:
            for name in order:
                a = training_seconds(trees[name], model, short, args)
                b = training_seconds(trees[name], model, long, args)
                results[(name, model)].append((b - a) / (long - short) * 1e3)
                print(
                    f"round {r + 1}: {model} {name} {results[(name, model)][-1]:.3f} ms/step",
                    file=sys.stderr,
                )
    lines = [
        f"Whole runs of {short:,} and {long:,} steps, ms per extra step, medians of {args.rounds} "
        f"interleaved rounds ({args.threads} thread(s)); before: {trees['before'].name}, "
        f"after: {trees['after'].name}.",
        "",
        "| model | before ms/step | after ms/step | after - before µs/step |",
        "|---|---:|---:|---:|",
    ]
    for model in models:
        b, a = (statistics.median(results[(t, model)]) for t in ("before", "after"))
        lines.append(f"| {model} | {b:.3f} | {a:.3f} | {(a - b) * 1e3:+,.0f} |")
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
