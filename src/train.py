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
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from src.data import DataError

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that cannot work; its message names the key."""


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


def build(cfg: DictConfig) -> Run:
    """Instantiate every object of a run from its config; raise ``ConfigError`` on bad values.

    The data is checked (or downloaded) before the rest is built, so missing data is reported
    before anything else happens.
    """
    datamodule = _instantiate(cfg.data, "data")
    datamodule.prepare_data()
    net = _instantiate(cfg.model, "model")
    optimizer = _instantiate(cfg.optimizer, "optimizer")
    try:  # an optimizer's own checks (e.g. a negative lr) run on construction: fail now, not later
        optimizer(net.parameters())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer: {e}") from None
    classifier = _instantiate(cfg.classifier, "classifier", net=net, optimizer=optimizer)
    callbacks = [
        _instantiate(c, f"callbacks.{name}") for name, c in cfg.callbacks.items() if c is not None
    ]
    logger = _instantiate(cfg.logger, "logger")
    trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    return Run(datamodule, classifier, trainer)


HPARAM_TRAINER_KEYS = ("max_steps", "val_check_interval", "precision")


def hyperparameters(cfg: DictConfig) -> dict[str, object]:
    """The run's settings as flat ``group/key`` values, for TensorBoard's HParams tab."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    flat: dict[str, object] = {f"{g}": choices[g] for g in ("model", "optimizer") if g in choices}
    flat["seed"] = cfg.seed
    for group in ("model", "optimizer", "data", "trainer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key.startswith("_") or (group == "trainer" and key not in HPARAM_TRAINER_KEYS):
                continue
            if isinstance(value, bool | int | float | str):
                flat[f"{group}/{key}"] = value
            elif isinstance(value, list | tuple):
                flat[f"{group}/{key}"] = str(value)
    return flat


def log_hparams(logger: TensorBoardLogger, params: dict, metrics: dict[str, float]) -> None:
    """Write the HParams entry once, at the end, naming metrics that the run logged as scalars.

    Lightning's ``log_hyperparams(params, metrics)`` would also write each metric again at step 0;
    TensorBoard's HParams tab reads the last value of each named scalar tag instead.
    """
    writer = logger.experiment._get_file_writer()
    for summary in hparams(params, metrics):
        writer.add_summary(summary)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and log one run; return its final metrics."""
    if cfg.data.get("val_size", 1) == 0 and cfg.monitor is not None:
        log.info("data.val_size=0: no validation split, so the last checkpoint is tested")
        cfg.monitor = None
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run = build(cfg)
    trainer = run.trainer
    trainer.fit(run.classifier, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)

    metrics = {}
    checkpoint = trainer.checkpoint_callback
    if (
        cfg.monitor is not None
        and checkpoint is not None
        and checkpoint.best_model_score is not None
    ):
        metrics[f"best_{cfg.monitor}"] = float(checkpoint.best_model_score)
        trainer.logger.log_metrics(metrics, step=trainer.global_step)
    if cfg.test:  # the selected checkpoint: best on validation, else the last
        selected = "best" if metrics else None
        trainer.test(run.classifier, datamodule=run.datamodule, ckpt_path=selected, verbose=False)
        final = trainer.callback_metrics
        metrics.update({k: float(v) for k, v in final.items() if k.startswith("final_test/")})
    if isinstance(trainer.logger, TensorBoardLogger):
        log_hparams(trainer.logger, hyperparameters(cfg), metrics)
    trainer.logger.save()
    return metrics


CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    output_dir = Path(cfg.paths.output_dir)
    try:
        metrics = train(cfg)
    except (ConfigError, DataError) as e:
        # Bad input the user can fix: one sentence and a non-zero exit, no stack trace.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log.info(f"{summary or 'done'} | run saved to {output_dir}")
    return metrics.get(f"best_{cfg.monitor}") if cfg.monitor else None


if __name__ == "__main__":
    main()
