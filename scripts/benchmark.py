"""How fast each model trains through ``python -m src.train``, side by side with a bare loop.

    python scripts/benchmark.py [--fake] [--data-root data] [--models mlp,convnet]
                                [--steps 40] [--repeats 5] [--device auto|cpu|cuda]
                                [--precision 32|bf16-mixed|16-mixed] [--compile]
                                [--whole-runs linear,mlp_numpy,mlp] [--multirun 10]

For each model it builds a run exactly as ``python -m src.train`` does (``src.build.build`` on the
composed Hydra config: the same data module, classifier, callbacks, TensorBoard logger and trainer)
and times training steps of a real ``trainer.fit``, with validation pushed out of the way. Beside
it, a bare loop trains the same model class with the same batch size and optimizer settings on
batches gathered from the same in-memory tensors: ``torch.optim`` (or the NumPy SGD), no Lightning,
no logging. Blocks alternate (project, bare, bare, project, ...) and repeat, and each ratio is taken
between neighbouring blocks, so that the ratios stay fair on a machine that is busy with other work.

Measured, and printed as Markdown tables:

- ms per training step (median over repetitions), the project / bare ratio (median of the paired
  ratios, with their range), the same ratio in CPU time, images per second, and the peak memory
  of the timed steps. A step is timed from the start of one training batch to the start of the
  next: the step, the callbacks, logging, the progress bar and fetching the next batch. The first
  ``--warmup`` steps of every block are not timed. CPU time is the process's (all threads,
  ``time.process_time``): a machine busy with other work disturbs it much less than wall time,
  as long as ``--threads`` leaves no thread waiting for a core (use ``--threads 1`` there).
  Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (the dataset included); on CPU the
  process's peak resident set (Linux ``VmHWM``, reset before each block), which includes the
  libraries and the dataset held in RAM (the same tensors for both variants), and in brackets
  how far it rose above the resident set at the start of the block.
- one evaluation of the test set: ``trainer.test`` of the project, and a bare ``inference_mode``
  pass over the same tensors in batches of ``data.eval_batch_size`` (the ConvNet on a CPU: two
  batches, scaled up to the whole set).
- how much of the default MLP's run goes into its validation intervals (validation split and test
  set every ``trainer.val_check_interval`` steps, checkpoints included): a real fit of two
  intervals, each step timed; an interval's cost is its step's time minus the median step.
- whole runs, timed from outside: ``python -m src.train`` of 200 and of 3,200 steps in
  subprocesses (no validation, no test), and the difference of their training times per step,
  beside a bare loop of 3,000 steps; project minus bare is the framework's fixed cost per step.
  The ``linear`` model (one linear layer, batch 8) has next to no compute, so its step is that
  fixed cost. See ``scripts/bench/whole_runs.py``.
- with ``--multirun JOBS``: a JOBS-job multirun of the default MLP against one run of it, and
  the budget it is held to (JOBS runs' training and evaluation, one start-up, 1 s a job).
- start-up: seconds from launching ``python -m src.train ... trainer.max_steps=1`` to its first
  training step (a ``scripts.bench.timing.Milestones`` callback added on the command line prints
  the moment), beside ``python -c "import torch"`` and ``python -c "import pytorch_lightning"``
  as the floors no project code can go under; and the data module's ``load()`` and ``setup()``
  in this process (CIFAR-10 read from the standard python files, split, normalised).

Each of these is measured by one module of ``scripts/bench/`` (steps, evaluation, whole_runs,
multirun, startup), and
``scripts/bench/report.py`` renders the tables. The NumPy MLP (``model=mlp_numpy``) runs on the CPU
in full precision only, and is skipped with other options. On a GPU the data module holds the
data on the device, and both variants read batches from there; ``--precision`` and ``--compile``
apply to both variants (the project through its config).
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: `src` and `scripts.bench` import from the root
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> None:
    """``--threads N``: set before NumPy and torch load, so that their thread pools obey it."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and value.isdigit() and int(value) > 0:
            for name in THREAD_VARIABLES:
                os.environ[name] = value


if __name__ == "__main__":
    _threads_from_argv(sys.argv[1:])

import torch  # noqa: E402

from scripts.bench.evaluation import measure_test_passes, measure_validation_shares  # noqa: E402
from scripts.bench.multirun import measure_multirun  # noqa: E402
from scripts.bench.report import render  # noqa: E402
from scripts.bench.settings import MODELS, Benchmark, log, quiet_logs  # noqa: E402
from scripts.bench.startup import STARTUP_KEYS, data_loading, startup  # noqa: E402, F401
from scripts.bench.steps import measure_steps  # noqa: E402
from scripts.bench.whole_runs import WHOLE_RUN_MODELS, measure_whole_runs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS)
    )
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps per block (ConvNet on CPU: a tenth)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each block")
    p.add_argument("--repeats", type=int, default=5, help="project/bare block pairs per model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads of torch and NumPy (default: theirs); 1 gives steadier numbers on a "
        "machine busy with other work",
    )
    p.add_argument("--precision", default="32-true", help="trainer.precision for both variants")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the network (both variants)"
    )
    p.add_argument("--data-root", default="data", help="the folder that holds cifar-10-batches-py")
    p.add_argument("--fake", action="store_true", help="synthetic data (data=fake): runs anywhere")
    p.add_argument("--eval-repeats", type=int, default=2, help="test passes timed per model")
    p.add_argument("--startup-repeats", type=int, default=2, help="0 skips the start-up timing")
    p.add_argument("--no-eval-share", action="store_true", help="skip the validation-share fit")
    p.add_argument(
        "--eval-interval",
        type=int,
        help="steps between validations in the validation-share fit (default: the model's)",
    )
    p.add_argument(
        "--whole-runs",
        default=",".join(WHOLE_RUN_MODELS),
        help="models also timed as whole python -m src.train runs (empty: none)",
    )
    p.add_argument(
        "--whole-run-steps",
        default="200,3200",
        help="the short and the long run's max_steps; their difference gives ms per step",
    )
    p.add_argument("--whole-run-repeats", type=int, default=2, help="short/long pairs per model")
    p.add_argument(
        "--multirun",
        type=int,
        default=0,
        metavar="JOBS",
        help="also time a JOBS-job multirun of the default MLP against one run (0: skip)",
    )
    p.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU here")
    args.device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if "mlp_numpy" in names and (
        args.device.type != "cpu" or args.precision not in ("32", "32-true") or args.compile
    ):
        log("note: the NumPy MLP runs on the CPU in its own dtype only: skipped with these options")
        names.remove("mlp_numpy")
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--steps and --repeats must be positive, --warmup non-negative")
    args.models = names
    args.whole_runs = [m.strip() for m in args.whole_runs.split(",") if m.strip() in names]
    try:
        args.whole_run_steps = sorted(int(n) for n in args.whole_run_steps.split(","))
    except ValueError:
        args.whole_run_steps = []
    if (
        len(args.whole_run_steps) != 2
        or args.whole_run_steps[0] < 1
        or len(set(args.whole_run_steps)) != 2
    ):
        p.error("--whole-run-steps takes two different positive step counts, e.g. 200,3200")
    if args.multirun < 0 or args.whole_run_repeats < 0:
        p.error("--multirun and --whole-run-repeats must not be negative")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    quiet = {"pytorch_lightning": logging.ERROR, "lightning": logging.ERROR, "src": logging.WARNING}
    with quiet_logs(quiet):
        return measure_and_report(args)


def measure_and_report(args: argparse.Namespace) -> str:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        bench = Benchmark(args, Path(tmp))
        try:
            settings = [bench.setting(name) for name in args.models]
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        runs = measure_steps(bench, settings, args.repeats)
        measure_test_passes(settings, runs, args.eval_repeats)
        eval_share = not args.no_eval_share and "mlp" in args.models
        shares = measure_validation_shares(bench) if eval_share else []
        whole = {}
        if args.whole_runs and args.whole_run_repeats:
            chosen = [s for s in settings if s.name in args.whole_runs]
            short, long = args.whole_run_steps
            whole = measure_whole_runs(bench, chosen, runs, short, long, args.whole_run_repeats)
        multirun = measure_multirun(bench, args.multirun) if args.multirun else None
        log("data loading")
        loads = data_loading(bench, 3)
        log("start-up")
        starts = startup(bench, args.startup_repeats) if args.startup_repeats else None
    seconds = time.perf_counter() - began
    report = render(args, settings, shares, starts, loads, whole, multirun, seconds)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return report


if __name__ == "__main__":
    main()
