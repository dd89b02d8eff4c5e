"""Train and test a classifier: ``python -m src.train [model=convnet] [key=value ...]``.

The flow, from config to result: Hydra composes ``conf/train.yaml`` with the chosen options ->
``build`` instantiates the data module, the model inside its LightningModule, the callbacks, the
logger and the trainer -> ``fit`` -> ``test`` of the selected checkpoint -> the monitored metric is
returned, for sweepers to optimise.
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from src import runs
from src.data import DataError
from src.lit.callbacks import NonFiniteLossError
from src.lit.speed import check_compile, check_precision, training_device

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that cannot work; its message names the key."""


# What the user can act on, reported as one sentence without a stack trace.
UserError = ConfigError | DataError | runs.ResumeError | NonFiniteLossError | OSError


@dataclass
class Run:
    """Everything one training run is made of."""

    datamodule: pl.LightningDataModule
    classifier: pl.LightningModule
    trainer: pl.Trainer


def _instantiate(node: DictConfig, key: str, **kwargs):
    """``instantiate`` whose errors name the config key and the cause, without Hydra's wrapping."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"{key}: {cause}") from None


def build(cfg: DictConfig, purge_step: int | None = None) -> Run:
    """Instantiate every object of a run from its config; raise ``ConfigError`` on bad values.

    The data is checked (or downloaded) before the rest is built, so missing data is reported
    before anything else happens.
    """
    datamodule = _instantiate(cfg.data, "data")
    datamodule.prepare_data()
    net = _instantiate(cfg.model, "model")
    # What the device cannot do is refused now, in a sentence (Lightning would quietly swap
    # 16-mixed for bf16-mixed on a CPU, and torch.compile would fail at the first step).
    compile_net = bool(cfg.get("compile", False))
    device, numpy_model = training_device(cfg.trainer.accelerator), not isinstance(net, nn.Module)
    try:
        check_precision(cfg.trainer.precision, device, numpy_model)
        if compile_net:
            check_compile(device, numpy_model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if compile_net:
        net.compile()  # in place: parameter names, and so checkpoints, stay those of the model
    optimizer = _instantiate(cfg.optimizer, "optimizer")
    try:  # an optimizer's own checks (e.g. a negative lr) run on construction: fail now, not later
        optimizer(net.parameters())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer: {e}") from None
    classifier = _instantiate(cfg.classifier, "classifier", net=net, optimizer=optimizer)
    callbacks = [
        _instantiate(c, f"callbacks.{name}") for name, c in cfg.callbacks.items() if c is not None
    ]
    # A resumed run drops the events its previous start logged after its last checkpoint.
    resumed = (
        {"purge_step": purge_step} if purge_step and "TensorBoard" in cfg.logger._target_ else {}
    )
    logger = _instantiate(cfg.logger, "logger", **resumed)
    trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    return Run(datamodule, classifier, trainer)


def read_checkpoint(path: str, model_target: str) -> dict:
    """Load a checkpoint to check it before training: a clear error if it is missing, unreadable
    or of another model."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"ckpt_path={path}: no such checkpoint") from None
    except Exception as e:
        raise ConfigError(f"ckpt_path={path} is not a readable checkpoint ({e})") from None
    tags = checkpoint.get("tags", {}) if isinstance(checkpoint, dict) else {}
    trained = tags.get("model")
    if trained != model_target or "global_step" not in checkpoint:
        raise ConfigError(
            f"ckpt_path={path} holds a {trained or 'foreign'} model, but this run trains "
            f"{model_target}"
        )
    return checkpoint


def check_fits(checkpoint: dict, classifier: pl.LightningModule, path: str) -> None:
    """Refuse a checkpoint whose tensors do not fit the model (e.g. other layer sizes)."""

    def shapes(ckpt: dict) -> set[tuple[str, tuple[int, ...]]]:
        # Torch parameters in "state_dict"; a module may add its own (the NumPy MLP's arrays).
        sections = {
            k: v for k, v in ckpt.items() if k.endswith("state_dict") and isinstance(v, dict)
        }
        return {(f"{s}.{k}", tuple(v.shape)) for s, d in sections.items() for k, v in d.items()}

    own = {"state_dict": classifier.state_dict()}
    classifier.on_save_checkpoint(own)
    if differences := sorted(shapes(own) ^ shapes(checkpoint))[:2]:
        raise ConfigError(f"ckpt_path={path} does not fit this model (e.g. {differences})")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and log one run; return its final metrics."""
    run_dir = Path(cfg.paths.output_dir)
    if cfg.data.get("val_size", 1) == 0 and cfg.monitor is not None:
        log.info("data.val_size=0: no validation split, so the last checkpoint is tested")
        cfg.monitor = None
        cfg.callbacks.model_checkpoint = None
    if cfg.ckpt_path == "last":
        cfg.ckpt_path = str(run_dir / runs.LAST_CHECKPOINT)
    checkpoint, start_step = None, 0
    if cfg.ckpt_path is not None:
        checkpoint = read_checkpoint(cfg.ckpt_path, cfg.model._target_)
        start_step = checkpoint["global_step"]

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run = build(cfg, purge_step=start_step + 1 if start_step else None)
    if checkpoint is not None:
        check_fits(checkpoint, run.classifier, cfg.ckpt_path)
    trainer = run.trainer
    trainer.fit(run.classifier, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)

    metrics = {}
    best = trainer.checkpoint_callback  # the first ModelCheckpoint: best by the monitored metric
    if cfg.monitor is not None and best.best_model_score is not None:
        metrics[f"best_{cfg.monitor}"] = float(best.best_model_score)
        trainer.logger.log_metrics(metrics, step=trainer.global_step)
    if cfg.test:  # the selected checkpoint: best on validation, else the last
        selected = best.best_model_path if metrics else None
        trainer.test(run.classifier, datamodule=run.datamodule, ckpt_path=selected, verbose=False)
        final = trainer.callback_metrics
        metrics.update({k: float(v) for k, v in final.items() if k.startswith("final_test/")})
    if isinstance(trainer.logger, TensorBoardLogger) and trainer.is_global_zero:
        params = runs.hyperparameters(cfg, runs.config_choices(run_dir))
        runs.log_hparams(trainer.logger, params, metrics)
        trainer.logger.save()
    return metrics


CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if cfg.resume is not None:
            cfg = runs.resume_config(run_dir, list(hydra_cfg.overrides.task))
            runs.write_record(run_dir, status="running", resumed=runs.now())
        else:
            runs.start_record(run_dir, list(hydra_cfg.overrides.task))
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
