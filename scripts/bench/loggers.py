"""The cost per logging step of each logger option (docs/loggers.md):
``python -m scripts.bench.loggers [--steps N] [--repeats R] [OPTION ...]``.

A logging training step hands every logger the learning rate and the training loss and accuracy
(``Classifier._log_train``: two ``log_metrics``, then ``save``). Here that is done ``--steps``
times to the loggers that ``build_loggers`` makes of the composed ``conf/logger`` option, in a
temporary run folder, after one untimed logging step (files created, MLflow's first write). The end
of the run (``finalize``: what is still buffered gets written) is timed apart. One process; on a
busy machine the numbers are rough.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from src.config import compose
from src.lit.tracking import build_loggers

OPTIONS = {
    "tensorboard": ["logger=tensorboard"],
    "csv": ["logger=csv"],
    "[tensorboard,csv]": ["logger=[tensorboard,csv]"],
    "mlflow": ["logger=mlflow"],
    "mlflow,flush_secs=0": ["logger=mlflow", "logger.mlflow.flush_secs=0"],
    "wandb": ["logger=wandb"],
}


def time_option(overrides: list[str], steps: int) -> tuple[float, float]:
    """ms per logging step while logging, and ms per logging step of the end's writes."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = compose(["data=fake", *overrides], output_dir=run_dir)
        run_loggers = build_loggers(cfg.logger, run_dir)
        for step in range(1, steps + 2):
            if step == 2:
                start = time.perf_counter()
            for logger in run_loggers:
                logger.log_metrics({"lr-SGD": 0.002}, step=step - 1)
            for logger in run_loggers:
                logger.log_metrics({"train/loss": 2.3 / step, "train/acc": 0.1}, step=step)
                logger.save()
        logging_done = time.perf_counter()
        for logger in run_loggers:
            logger.finalize("success")
            if hasattr(logger, "finish"):  # W&B: end the run, or the next one would reuse it
                logger.finish()
        ended = time.perf_counter()
    return (logging_done - start) / steps * 1e3, (ended - logging_done) / steps * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("options", nargs="*", help=f"of {', '.join(OPTIONS)} (default: all)")
    parser.add_argument("--steps", type=int, default=300, help="timed logging steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if unknown := [o for o in args.options if o not in OPTIONS]:
        parser.error(f"unknown option {unknown[0]!r}; one of {', '.join(OPTIONS)}")
    print("| logger= | ms per logging step (median, min-max) | the end's writes, per step |")
    print("|---|---|---|")
    for option in args.options or OPTIONS:
        runs = [time_option(OPTIONS[option], args.steps) for _ in range(args.repeats)]
        logging, end = ([r[i] for r in runs] for i in (0, 1))
        print(
            f"| `{option}` | {statistics.median(logging):.3f} ({min(logging):.3f}-"
            f"{max(logging):.3f}) | {statistics.median(end):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
