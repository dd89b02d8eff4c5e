"""Train and test a classifier: ``python -m src.train [model=convnet] [key=value ...]``.

The flow, top to bottom: Hydra composes ``conf/train.yaml`` with the chosen options, and the
run-folder callback (``src.run_folder.ClaimRunFolder``) checks its values and claims a new folder
-> ``resolve`` turns it into the config this run trains with (``src.config``) -> ``prepare``
builds the data module and the classifier (``src.build``), checks them (``src.checks``) and builds
the trainer -> ``fit`` -> ``test`` of the selected checkpoint -> the run's record and
hyperparameters. The monitored metric is returned, for sweepers to optimise.
"""

import logging
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src import run_folder
from src.build import Run, build_classifier, build_datamodule, build_trainer
from src.checks import check_run
from src.config import CONFIG_DIR, ConfigError, choices_line, resolve
from src.data import DataError
from src.lit import compat
from src.lit.callbacks import NonFiniteLossError
from src.lit.tracking import hyperparameters, log_final_hparams
from src.targets import UntrustedTargetError

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "Run", "UserError", "main", "prepare", "train"]

# What the user can act on, reported as one sentence without a stack trace: bad input, a failed
# run, or a file system that cannot take the run's files (full, read-only).
UserError = (
    ConfigError, DataError, run_folder.RunFolderError, UntrustedTargetError, NonFiniteLossError,
    OSError,
)  # fmt: skip


def prepare(cfg: DictConfig) -> Run:
    """Build and check a run of a resolved config.

    Everything that can refuse the run happens here, before training: the data module and the
    classifier are built once (``src.build``), checked (``src.checks.check_run``), and only then
    is the trainer built.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the weights are drawn
    datamodule, classifier = build_datamodule(cfg), build_classifier(cfg)
    checkpoint = check_run(cfg, datamodule, classifier)
    start_step = checkpoint["global_step"] if checkpoint is not None else 0
    trainer = build_trainer(cfg, purge_step=start_step + 1 if start_step else None)
    return Run(datamodule, classifier, trainer)


def final_test(run: Run, cfg: DictConfig, run_dir: Path) -> tuple[dict[str, float], Path | None]:
    """Test the selected checkpoint: the best on validation (by ``cfg.monitor``), else the last.
    Return ``best_<monitor>`` and the ``final_test/...`` metrics, and the checkpoint tested."""
    trainer, metrics = run.trainer, {}
    best = trainer.checkpoint_callback  # the first ModelCheckpoint: best by the monitored metric
    if cfg.monitor is not None and best is not None and best.best_model_score is not None:
        metrics[f"best_{cfg.monitor}"] = float(best.best_model_score)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        selected = Path(best.best_model_path)
    else:
        last = run_dir / run_folder.LAST_CHECKPOINT
        selected = last if trainer.checkpoint_callbacks and last.is_file() else None
    if cfg.test:
        trainer.test(run.classifier, datamodule=run.datamodule, ckpt_path=selected, verbose=False)
        final = trainer.callback_metrics
        metrics.update({k: float(v) for k, v in final.items() if k.startswith("final_test/")})
    return metrics, selected


def record_hparams(run: Run, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Give every logger the run's settings and final metrics (once, rank 0)."""
    if run.trainer.is_global_zero:
        params = hyperparameters(cfg, run_folder.config_choices(Path(cfg.paths.output_dir)))
        log_final_hparams(run.trainer.loggers, params, metrics)


def fit_and_test(run: Run, cfg: DictConfig) -> dict[str, float]:
    """Fit a prepared run, test its selected checkpoint, record it; return its final metrics."""
    run_dir = Path(cfg.paths.output_dir)
    run.trainer.fit(run.classifier, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
    # A sweep's pruner stopped the run early: its callback says at which step (the Optuna
    # sweeper's ReportToTrial); the record then ends "pruned" (run_folder.end_status).
    pruned = [c.pruned_at_step for c in run.trainer.callbacks
              if getattr(c, "pruned_at_step", None) is not None]  # fmt: skip
    if pruned and run.trainer.is_global_zero:
        run_folder.write_record(run_dir, pruned_at_step=pruned[0])
    metrics, tested = final_test(run, cfg, run_dir)
    record_hparams(run, cfg, metrics)
    if tested is not None and run.trainer.is_global_zero:
        run_folder.write_record(
            run_dir, tested_checkpoint=run_folder.RunFolder(run_dir).relative(tested)
        )
    return metrics


def train(cfg: DictConfig) -> dict[str, float]:
    """Check, build, fit, test and record one run of a resolved config (``src.config.resolve``;
    ``src.config.compose`` returns one); return its final metrics."""
    run = prepare(cfg)
    return fit_and_test(run, cfg)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    new_run = cfg.get("resume") is None
    compat.quiet_lightning()
    logging.raiseExceptions = False  # a log file on a full disk: no traceback per line
    log.info(f"{choices_line(run_folder.config_choices(run_dir))} | overrides: "
             f"{' '.join(overrides) or 'none'}")  # fmt: skip
    try:
        cfg = resolve(cfg, overrides)
        run = prepare(cfg)
    except UserError as e:  # refused before training: one sentence, and a new run leaves nothing
        if in_sweep:
            run_folder.write_failure(run_dir, "failed", str(e))
            raise  # Hydra marks this job failed and the sweep goes on with the others
        if new_run:
            run_folder.release(run_dir)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        if new_run:
            run_folder.start_record(run_dir, overrides)
        else:
            run_folder.write_record(run_dir, status="running", resumed=run_folder.now())
        metrics = fit_and_test(run, cfg)
    except BaseException as e:
        stopped = isinstance(e, KeyboardInterrupt | SIGTERMException)
        reason = str(e) or type(e).__name__
        run_folder.write_failure(run_dir, "interrupted" if stopped else "failed", reason)
        if in_sweep and not stopped:
            raise  # Hydra marks this job failed and the sweep goes on with the others
        if stopped:
            hint = f"resume with: python -m src.train resume={run_dir}"
            print(f"{reason}; {hint}", file=sys.stderr)
            sys.exit(130)
        if isinstance(e, UserError):
            # A failed run (a NaN loss, a full disk): one sentence and a non-zero exit.
            print(f"error: {reason}", file=sys.stderr)
            sys.exit(1)
        raise
    status = run_folder.end_status(run_dir)  # "pruned" if a sweep's pruner stopped it early
    run_folder.write_record(run_dir, status=status, finished=run_folder.now(), metrics=metrics)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log.info(f"{summary or 'done'} | run saved to {run_dir}")
    return metrics.get(f"best_{cfg.monitor}") if cfg.monitor else None


if __name__ == "__main__":
    main()
