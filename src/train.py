"""Train and test a classifier: ``python -m src.train [model=convnet] [key=value ...]``.

The flow, top to bottom: Hydra composes ``conf/train.yaml`` with the chosen options -> ``resolve``
turns it into the config this run trains with (``src.config``) -> ``check_run`` checks everything
the run needs before anything is built (``src.checks``) -> ``build`` instantiates the data module,
the model inside its LightningModule, the callbacks, the logger and the trainer -> ``fit`` ->
``test`` of the selected checkpoint -> the run's record and hyperparameters. The monitored metric
is returned, for sweepers to optimise.
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src import runs
from src.checks import check_run, instantiate_node
from src.config import CONFIG_DIR, ConfigError, choices_line, resolve
from src.data import DataError
from src.lit import compat
from src.lit.callbacks import NonFiniteLossError
from src.lit.loggers import build_loggers, hyperparameters, log_final_hparams

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "Run", "UserError", "build", "main", "train"]

# What the user can act on, reported as one sentence without a stack trace.
UserError = ConfigError | DataError | runs.ResumeError | NonFiniteLossError | OSError


@dataclass
class Run:
    """Everything one training run is made of."""

    datamodule: pl.LightningDataModule
    classifier: pl.LightningModule
    trainer: pl.Trainer


def build(cfg: DictConfig, purge_step: int | None = None) -> Run:
    """Instantiate every object of a run from its config; raise ``ConfigError`` on bad values.

    ``purge_step``: a resumed run continues its loggers from this step (the step after its last
    checkpoint; ``src.lit.loggers.build_loggers``).
    """
    datamodule = instantiate_node(cfg.data, "data")
    net = instantiate_node(cfg.model, "model")
    if cfg.get("compile", False):
        net.compile()  # in place: parameter names, and so checkpoints, stay those of the model
    optimizer = instantiate_node(cfg.optimizer, "optimizer")
    classifier = instantiate_node(cfg.classifier, "classifier", net=net, optimizer=optimizer)
    callbacks = [
        instantiate_node(c, f"callbacks.{name}")
        for name, c in cfg.callbacks.items()
        if c is not None
    ]
    logger = build_loggers(cfg.get("logger"), Path(cfg.paths.output_dir), purge_step)
    trainer = instantiate_node(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    return Run(datamodule, classifier, trainer)


def final_test(run: Run, cfg: DictConfig) -> dict[str, float]:
    """Test the selected checkpoint: the best on validation (by ``cfg.monitor``), else the last
    weights. Return ``best_<monitor>`` and the ``final_test/...`` metrics."""
    trainer, metrics = run.trainer, {}
    best = trainer.checkpoint_callback  # the first ModelCheckpoint: best by the monitored metric
    if cfg.monitor is not None and best.best_model_score is not None:
        metrics[f"best_{cfg.monitor}"] = float(best.best_model_score)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
    if cfg.test:
        selected = best.best_model_path if metrics else None
        trainer.test(run.classifier, datamodule=run.datamodule, ckpt_path=selected, verbose=False)
        final = trainer.callback_metrics
        metrics.update({k: float(v) for k, v in final.items() if k.startswith("final_test/")})
    return metrics


def record_hparams(run: Run, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Give every logger the run's settings and final metrics (once, rank 0)."""
    if run.trainer.is_global_zero:
        params = hyperparameters(cfg, runs.config_choices(Path(cfg.paths.output_dir)))
        log_final_hparams(run.trainer.loggers, params, metrics)


def train(cfg: DictConfig) -> dict[str, float]:
    """Check, build, fit, test and record one run of a resolved config (``src.config.resolve``;
    ``src.config.compose`` returns one); return its final metrics."""
    checkpoint = check_run(cfg)
    start_step = checkpoint["global_step"] if checkpoint is not None else 0

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run = build(cfg, purge_step=start_step + 1 if start_step else None)
    run.trainer.fit(run.classifier, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
    metrics = final_test(run, cfg)
    record_hparams(run, cfg, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    compat.quiet_lightning()
    try:
        cfg = resolve(cfg, overrides)
        if cfg.resume is not None:
            runs.write_record(run_dir, status="running", resumed=runs.now())
        else:
            runs.start_record(run_dir, overrides)
        chosen = choices_line(runs.config_choices(run_dir))
        log.info(f"{chosen} | overrides: {' '.join(overrides) or 'none'}")
        metrics = train(cfg)
    except BaseException as e:
        stopped = isinstance(e, KeyboardInterrupt | SIGTERMException)
        status = "interrupted" if stopped else "failed"
        runs.write_record(run_dir, status=status, error=str(e) or type(e).__name__)
        if in_sweep and not stopped:
            raise  # Hydra marks this job failed and the sweep goes on with the others
        if stopped:
            hint = f"resume with: python -m src.train resume={run_dir}"
            print(f"{e or type(e).__name__}; {hint}", file=sys.stderr)
            sys.exit(130)
        if isinstance(e, UserError):
            # Bad input or a failed run: one sentence and a non-zero exit, no stack trace.
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        raise
    status = runs.end_status(run_dir)  # "pruned" if a sweep's pruner stopped it early
    runs.write_record(run_dir, status=status, finished=runs.now(), metrics=metrics)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log.info(f"{summary or 'done'} | run saved to {run_dir}")
    return metrics.get(f"best_{cfg.monitor}") if cfg.monitor else None


if __name__ == "__main__":
    main()
