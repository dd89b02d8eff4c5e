"""The run config: composed from ``conf/`` and resolved into what one run needs.

``python -m src.train`` composes ``conf/train.yaml`` through ``@hydra.main``; scripts, tests and
other entry points compose the same tree with ``compose``. Either way ``resolve`` then turns the
composed config into the one a run trains with (resume, ``ckpt_path=last``, and no checkpoint
selection without a validation split), so that ``src.train.train`` never rewrites its config.
"""

import copy
import logging
import math
from collections.abc import Iterable
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from src import run_folder  # also registers the config resolver that conf/hydra uses

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"

# `n_inputs: ${product:${data.input_shape}}` (conf/model/): the MLPs' input size follows the data.
if not OmegaConf.has_resolver("product"):
    OmegaConf.register_new_resolver("product", lambda values: math.prod(values))


class ConfigError(ValueError):
    """A config value that cannot work; its message names the key."""


def compose(overrides: Iterable[str] = (), output_dir: Path | str | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` as ``python -m src.train OVERRIDES`` would,
    Hydra's own config included, and resolve it (``resolve``).

    With ``output_dir`` the run writes there (Hydra's runtime folder is set to it, as the
    interpolations in ``conf/paths`` expect), and the result can go straight to
    ``src.train.train``. Without it, ``paths.output_dir`` stays unresolvable.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
    if output_dir is None:
        return cfg
    output_dir = Path(output_dir)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.paths.output_root = str(output_dir.parent)
    HydraConfig().set_config(cfg)
    return resolve(cfg, list(overrides))


def resolve(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """The config a run trains with; ``cfg`` itself is left as it is.

    - ``resume=DIR``: the config of DIR's first start with ``overrides`` applied
      (``run_folder.resume_config``), continuing from ``DIR/checkpoints/last.ckpt``; its saved
      config may name only allowed targets (``src.targets``; this config's ``trusted_targets``
      extends the list);
    - ``ckpt_path=last``: the newest checkpoint of this run's own folder;
    - ``data.val_size=0``: no validation split, so nothing to select a checkpoint by: no
      ``monitor``, no best checkpoint, and the last checkpoint is tested.

    Raises ``run_folder.RunFolderError`` if the run to resume is not there, names a target off the
    allow-list, or the overrides would make another run.
    """
    if cfg.get("resume") is not None:
        trusted = list(cfg.get("trusted_targets") or [])  # the local config's, not the saved one's
        cfg = run_folder.resume_config(Path(cfg.resume), list(overrides or []), trusted)
    else:
        cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        if cfg.get("ckpt_path") == "last":
            cfg.ckpt_path = str(Path(cfg.paths.output_dir) / run_folder.LAST_CHECKPOINT)
        if cfg.data.get("val_size", 1) == 0 and cfg.get("monitor") is not None:
            log.info("data.val_size=0: no validation split, so the last checkpoint is tested")
            cfg.monitor = None
            if cfg.callbacks.get("model_checkpoint") is not None:
                cfg.callbacks.model_checkpoint.save_top_k = 0  # last.ckpt only
    return cfg


def choices_line(choices: dict[str, str | None]) -> str:
    """The config-group options of a run on one line: ``model=mlp optimizer=sgd ...``."""
    shown = {k: v for k, v in choices.items() if v is not None and not k.startswith("hydra")}
    return " ".join(f"{group}={option}" for group, option in shown.items())
