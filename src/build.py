"""Config -> the objects of a run: the one place that instantiates them.

``src.train``, ``src.evaluate``, ``src.gradcheck`` and the benchmark all build through here, and
``src.checks`` validates what was built without building it again. A config read back from a run
folder has had its ``_target_``s checked first (``RunFolder.config``, ``src.targets``).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.config import ConfigError
from src.lit.tracking import build_loggers


def instantiate_node(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate`` whose errors name the config key and the cause, without Hydra's wrapping."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"{key}: {cause}") from None


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The configured data module (nothing read yet: ``prepare_data`` and ``setup`` do that)."""
    return instantiate_node(cfg.data, "data")


def build_net(cfg: DictConfig, **model_kwargs: Any) -> Any:
    """The configured network (``model_kwargs`` override its settings, e.g. the NumPy dtype)."""
    return instantiate_node(cfg.model, "model", **model_kwargs)


def build_classifier(cfg: DictConfig, **model_kwargs: Any) -> pl.LightningModule:
    """The network inside its LightningModule, with the configured optimizer and schedule
    (``model_kwargs``: as for ``build_net``)."""
    net = build_net(cfg, **model_kwargs)
    optimizer = instantiate_node(cfg.optimizer, "optimizer")
    compile_net = bool(cfg.get("compile", False))
    return instantiate_node(
        cfg.classifier, "classifier", net=net, optimizer=optimizer, compile_net=compile_net
    )


def build_trainer(cfg: DictConfig, purge_step: int | None = None) -> pl.Trainer:
    """The trainer with the configured callbacks and loggers.

    ``purge_step``: a resumed run continues its loggers from this step (the step after its last
    checkpoint; ``src.lit.tracking.build_loggers``).
    """
    callbacks = [
        instantiate_node(c, f"callbacks.{name}")
        for name, c in cfg.callbacks.items()
        if c is not None
    ]
    loggers = build_loggers(cfg.get("logger"), Path(cfg.paths.output_dir), purge_step)
    return instantiate_node(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)


@dataclass
class Run:
    """Everything one training run is made of."""

    datamodule: pl.LightningDataModule
    classifier: pl.LightningModule
    trainer: pl.Trainer


def build(cfg: DictConfig, purge_step: int | None = None) -> Run:
    """Every object of a run, unchecked (``src.train.train`` checks in between)."""
    return Run(build_datamodule(cfg), build_classifier(cfg), build_trainer(cfg, purge_step))
