"""The performance tools: ``python -m scripts.bench <subcommand> [options]``, from the repository
root. ``--help`` lists the subcommands (``SUBCOMMANDS``), ``<subcommand> --help`` their options;
``docs/benchmark.md`` explains the tables.

Every subcommand prints a Markdown report (``--output FILE`` also writes it). Options that cannot
work are refused in one sentence, exit status 1, before anything is measured; a check that finds
a problem (``host-copies``, ``gpu-check``) also exits with 1.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> None:
    """``--threads N``: set before NumPy and torch load, so that their thread pools (and those of
    the runs launched in subprocesses) obey it."""
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

from scripts.bench import (  # noqa: E402
    batchnorm,
    compare,
    diagnostics,
    fixed_cost,
    gpu_check,
    host_copies,
    numpy_mlp,
    steps,
    whole_runs,
)
from scripts.bench.settings import MODELS, CheckFailed, UsageError, quiet_logs  # noqa: E402

#: Subcommand -> (its module, whether it trains runs of the project, its one-line description).
SUBCOMMANDS = {
    "steps": (steps, True, "ms per training step through src.train vs a bare loop"),
    "whole-runs": (whole_runs, True, "whole python -m src.train runs, timed from outside"),
    "fixed-cost": (fixed_cost, True, "the fixed cost per step, rung by rung"),
    "compare": (compare, True, "the whole-run step time of two checkouts"),
    "batchnorm": (batchnorm, False, "one training step of each batch norm"),
    "diagnostics": (diagnostics, True, "what callbacks=diagnostics costs per step"),
    "numpy": (numpy_mlp, False, "a bare NumPy MLP step against PyTorch's"),
    "host-copies": (host_copies, True, "no host-to-device copy in a training step"),
    "gpu-check": (gpu_check, None, "the checks that need a GPU, as one report"),
}


class Parser(argparse.ArgumentParser):
    """Refuses bad options in one sentence with exit status 1, as the project's tools do."""

    def error(self, message: str):
        self.exit(1, f"error: {message}\n")


def machine_options() -> argparse.ArgumentParser:
    """The options of every measuring subcommand: where it runs, and where its report goes."""
    p = Parser(add_help=False)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads of torch and NumPy (default: theirs); 1 gives steadier numbers on a "
        "machine busy with other work",
    )
    p.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    return p


def run_options() -> argparse.ArgumentParser:
    """The options of the subcommands that train runs of the project (``Benchmark``)."""
    p = Parser(add_help=False)
    p.add_argument("--fake", action="store_true", help="synthetic data (data=fake): runs anywhere")
    p.add_argument("--data-root", default="data", help="the folder that holds cifar-10-batches-py")
    p.add_argument("--precision", default="32-true", help="trainer.precision of every run")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    return p


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m scripts.bench", description=__doc__.split("\n\n")[0])
    subcommands = p.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    machine, runs = machine_options(), run_options()
    for name, (module, trains, help_line) in SUBCOMMANDS.items():
        parents = [] if trains is None else [machine, runs] if trains else [machine]
        sub = subcommands.add_parser(
            name,
            parents=parents,
            help=help_line,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
    return p


def check(args: argparse.Namespace) -> str | None:
    """Resolve the shared options in place; what is wrong with them, in one sentence, or None."""
    if getattr(args, "device", None) is not None:
        if args.device == "auto":
            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cuda" and not torch.cuda.is_available():
            return "--device cuda: no CUDA GPU here"
        args.device = torch.device(args.device)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            return "--threads must be positive"
        torch.set_num_threads(args.threads)
    if isinstance(getattr(args, "models", None), str):
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        if unknown := [m for m in args.models if m not in MODELS]:
            return f"unknown model(s) {unknown}; choose from {list(MODELS)}"
        full_precision = args.precision in ("32", "32-true")
        numpy_can_run = args.device.type == "cpu" and full_precision and not args.compile
        if "mlp_numpy" in args.models and not numpy_can_run:
            note = "the NumPy MLP runs on the CPU in its own dtype only: skipped with these options"
            print(f"note: {note}", file=sys.stderr)
            args.models.remove("mlp_numpy")
    return SUBCOMMANDS[args.subcommand][0].check_arguments(args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if problem := check(args):
        print(f"error: {problem}", file=sys.stderr)
        return 1
    quiet = {"pytorch_lightning": logging.ERROR, "lightning": logging.ERROR, "src": logging.WARNING}
    status = 0
    try:
        with quiet_logs(quiet):
            report = SUBCOMMANDS[args.subcommand][0].run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except CheckFailed as e:
        report, status = str(e), 1
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
