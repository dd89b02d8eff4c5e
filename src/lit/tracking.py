"""Which loggers a run writes its curves, hyperparameters and final metrics to (``conf/logger/``).

``logger=tensorboard`` (the default), ``csv``, ``mlflow`` and ``wandb``, or several at once:
``'logger=[tensorboard,csv]'``. Each option is one key of the ``logger`` node
(``logger: {tensorboard: {...}, csv: {...}}``); the saved configs of runs made before that have a
single ``logger: {_target_: ...}`` node, which still builds (``logger_nodes``).

Every chosen logger gets the same curves at the same steps (Lightning hands each logged value to
all of them), the run's hyperparameters with its final metrics at the end
(``log_final_hparams``), and ``src.evaluate``'s figures and numbers where it takes them
(``log_evaluation``). What a resumed run does to each logger's curves: ``build_loggers`` and
docs/loggers.md. MLflow and W&B are optional extras, checked before a run (``check_loggers``).
"""

import logging
import os
import time
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import loggers
from torch.utils.tensorboard.summary import hparams

from src.config import ConfigError
from src.lit import compat
from src.lit.loggers import CSVLogger, WandbLogger
from src.run_folder import LOGGER_RUNS

log = logging.getLogger(__name__)

#: The optional loggers: Lightning's class, the module it needs, and the extra that installs it.
EXTRAS = (
    (loggers.MLFlowLogger, "mlflow", "MLflow", "mlflow"),
    (loggers.WandbLogger, "wandb", "Weights & Biases", "wandb"),
)

# ------------------------------------------------------------------------------------------------
# From config to loggers, and the end of a run
# ------------------------------------------------------------------------------------------------


def logger_nodes(logger_cfg: DictConfig | None) -> dict[str, DictConfig]:
    """The chosen loggers' config nodes by option name (``{"tensorboard": ..., "csv": ...}``).

    A run made before several loggers could be chosen saved one ``{_target_: ...}`` node: it is
    named ``logger``.
    """
    if logger_cfg is None:
        return {}
    if "_target_" in logger_cfg:
        return {"logger": logger_cfg}
    return {name: node for name, node in logger_cfg.items() if node is not None}


def _logger_class(name: str, node: DictConfig) -> type:
    try:
        return get_class(node._target_)
    except Exception as e:
        raise ConfigError(
            f"logger.{name}._target_={node.get('_target_')!r} cannot be imported ({e})"
        ) from None


def _extra(cls: type) -> tuple[str, str, str] | None:
    """(module, name, extra) of an optional logger class, or None for one that needs none."""
    return next(((m, n, x) for base, m, n, x in EXTRAS if issubclass(cls, base)), None)


def check_loggers(logger_cfg: DictConfig | None) -> None:
    """Raise ``ConfigError`` if no logger is chosen, or a chosen one's optional extra is not
    installed (one sentence that names the extra), before anything is built or written."""
    nodes = logger_nodes(logger_cfg)
    if not nodes:
        raise ConfigError(
            "logger: no logger is chosen; a run logs its curves to at least one "
            "(logger=tensorboard, csv, mlflow, wandb or a list such as 'logger=[tensorboard,csv]')"
        )
    for name, node in nodes.items():
        extra = _extra(_logger_class(name, node))
        if extra is not None and find_spec(extra[0]) is None:
            module, title, extra_name = extra
            raise ConfigError(
                f"logger={name} needs {title}, an optional extra that is not installed here: "
                f"pip install -e '.[{extra_name}]'"
            )


def read_logger_runs(run_dir: Path) -> dict[str, str]:
    """The MLflow and W&B run ids a run folder's loggers write to (``LOGGER_RUNS``), if any."""
    path = Path(run_dir) / LOGGER_RUNS
    return {k: str(v) for k, v in OmegaConf.load(path).items()} if path.is_file() else {}


def build_loggers(
    logger_cfg: DictConfig | None, run_dir: Path, purge_step: int | None = None
) -> list[loggers.Logger]:
    """Instantiate the chosen loggers of a run in ``run_dir``.

    ``purge_step``: the run resumes from a checkpoint at ``purge_step - 1``. TensorBoard and CSV
    drop what an earlier start in this folder logged from ``purge_step`` on; MLflow and W&B
    continue the run recorded in ``run_dir/loggers.yaml`` (their history is append-only: the
    steps an interrupted start logged after its checkpoint stay, and are logged again). A new
    MLflow or W&B run is created here, and its id recorded there.
    """
    from src.build import instantiate_node  # here: src.build imports this module

    known = read_logger_runs(run_dir)
    built: dict[str, loggers.Logger] = {}
    for name, node in logger_nodes(logger_cfg).items():
        cls = _logger_class(name, node)
        kwargs: dict[str, Any] = {}
        if purge_step and issubclass(cls, loggers.TensorBoardLogger | CSVLogger):
            kwargs["purge_step"] = purge_step
        if name in known and issubclass(cls, loggers.MLFlowLogger):
            kwargs["run_id"] = known[name]
        if name in known and issubclass(cls, loggers.WandbLogger):
            kwargs["id"] = known[name]
        built[name] = instantiate_node(node, f"logger.{name}", **kwargs)
    _record_logger_runs(run_dir, built, known)
    return list(built.values())


def _record_logger_runs(run_dir: Path, built: dict, known: dict[str, str]) -> None:
    if rank_zero_only.rank != 0:
        return  # the other processes' loggers log nothing
    runs = dict(known)
    for name, logger in built.items():
        if isinstance(logger, loggers.MLFlowLogger):
            try:
                runs[name] = logger.run_id  # creates the run now, or finds the one to continue
            except Exception as e:  # mlflow's MlflowException: a run id this store does not hold
                raise ConfigError(
                    f"logger.{name}: the MLflow run {known.get(name)} that "
                    f"{Path(run_dir) / LOGGER_RUNS} names cannot be continued in this tracking "
                    f"store ({str(e).splitlines()[0]}); remove it from that file to start a new "
                    "MLflow run"
                ) from None
        elif isinstance(logger, loggers.WandbLogger):
            runs[name] = logger.experiment.id
    if runs != known:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / LOGGER_RUNS).write_text(OmegaConf.to_yaml(OmegaConf.create(runs)))


def log_final_hparams(
    run_loggers: list[loggers.Logger], params: Mapping[str, Any], metrics: Mapping[str, float]
) -> None:
    """Give every logger the run's hyperparameters at the end of the run, and write everything
    out: MLflow's queue is drained and the W&B run, which Lightning leaves open, is finished.
    Call on rank 0 only.

    The final metrics themselves are curves every logger already has (logged at the last step);
    TensorBoard's HParams entry names them (``log_hparams``).
    """
    for logger in run_loggers:
        if isinstance(logger, loggers.TensorBoardLogger):
            log_hparams(logger, params, metrics)
            logger.experiment.flush()  # now: the project's logger flushes only now and then
            continue
        logger.log_hyperparams(dict(params))
        logger.finalize("success")  # again, after fit's and test's: CSV saves, MLflow drains
        if isinstance(logger, WandbLogger):
            logger.finish()


def log_hparams(
    logger: loggers.TensorBoardLogger, params: Mapping[str, Any], metrics: Mapping[str, float]
) -> None:
    """Write TensorBoard's HParams entry once, at the end, naming metrics the run logged as
    scalars.

    Lightning's ``log_hyperparams(params, metrics)`` would also write each metric again at step 0;
    TensorBoard's HParams tab reads the last value of each named scalar tag instead.
    """
    writer = compat.tensorboard_file_writer(logger)
    for summary in hparams(dict(params), dict(metrics)):
        writer.add_summary(summary)


# ------------------------------------------------------------------------------------------------
# Hyperparameters: the knobs a person compares across runs
# ------------------------------------------------------------------------------------------------

#: The data settings that change what is learned (not its URL, checksum, folder or download flag).
DATA_KNOBS = ("batch_size", "normalize", "augment", "val_size")
#: The trainer settings that change what is learned.
TRAINER_KNOBS = ("max_steps", "precision")
#: The shape of the data, which the model configs repeat: not a choice.
DATA_SHAPE = frozenset(("n_inputs", "n_channels", "n_classes"))


def hyperparameters(cfg: DictConfig, choices: Mapping[str, str | None]) -> dict[str, Any]:
    """The run's knobs as flat ``group/key`` values: the model, optimizer and scheduler chosen
    and their settings, batch size, normalisation, augmentation, validation size, steps,
    precision and seed.

    A setting that is an interpolation (``n_classes: ${data.num_classes}``, ``T_max:
    ${trainer.max_steps}``) follows another one and is left out, as are private keys
    (``_target_``).
    """
    flat: dict[str, Any] = {
        g: choices[g] or "none" for g in ("model", "optimizer", "scheduler") if g in choices
    }
    flat["seed"] = cfg.seed
    for group in ("model", "optimizer", "scheduler"):
        if cfg.get(group) is not None:
            flat.update(_knobs(cfg[group], group))
    for group, keys in (("data", DATA_KNOBS), ("trainer", TRAINER_KNOBS)):
        flat.update({f"{group}/{k}": _plain(cfg[group][k]) for k in keys if k in cfg[group]})
    return flat


def _knobs(node: DictConfig, prefix: str) -> dict[str, Any]:
    found = {}
    for key in node:
        if key.startswith("_") or key in DATA_SHAPE or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            found.update(_knobs(value, f"{prefix}/{key}"))
        elif value is not None:
            found[f"{prefix}/{key}"] = _plain(value)
    return found


def _plain(value: Any) -> bool | int | float | str:
    """A value every logger takes (TensorBoard's HParams: bool, number or string)."""
    if isinstance(value, bool | int | float | str):
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return str(value)  # a list of hidden layer sizes: "[100, 100]"


# ------------------------------------------------------------------------------------------------
# src.evaluate's results for the loggers that take them
# ------------------------------------------------------------------------------------------------


def log_evaluation(
    logger_cfg: DictConfig | None,
    run_dir: Path,
    step: int,
    scalars: Mapping[str, float],
    figures: Mapping[str, Path],
) -> None:
    """Give the run's MLflow and W&B runs ``src.evaluate``'s numbers (at the checkpoint's
    ``step``) and figures (PNG files by tag; in MLflow artifacts under the tag's first folder,
    named as the files: ``eval/test_confusion_matrix.png`` as in the run folder; in W&B images).

    TensorBoard gets them from ``src.evaluate`` itself; the CSV logger takes no figures, and the
    numbers are in ``eval/metrics.yaml``. A logger whose package is missing here is skipped with a
    warning.
    """
    known = read_logger_runs(run_dir)
    for name, node in logger_nodes(logger_cfg).items():
        if name not in known:
            continue
        try:
            cls = _logger_class(name, node)
        except ConfigError:
            continue
        extra = _extra(cls)
        if extra is None:
            continue
        if find_spec(extra[0]) is None:
            log.warning(f"logger {name}: not given the evaluation ({extra[1]} is not installed)")
        elif issubclass(cls, loggers.MLFlowLogger):
            _mlflow_evaluation(node, known[name], step, scalars, figures)
        elif issubclass(cls, loggers.WandbLogger):
            _wandb_evaluation(node, run_dir, known[name], step, scalars, figures)


def _mlflow_evaluation(node, run_id, step, scalars, figures) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(node.get("tracking_uri") or os.getenv("MLFLOW_TRACKING_URI"))
    now_ms = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now_ms, step) for k, v in scalars.items()]
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    for tag, path in figures.items():
        client.log_artifact(run_id, str(path), artifact_path=Path(tag).parts[0])


def _wandb_evaluation(node, run_dir, run_id, step, scalars, figures) -> None:
    import wandb

    offline = node.get("offline", False)
    run = wandb.init(id=run_id, resume="allow", project=node.get("project"), dir=str(run_dir),
                     mode="offline" if offline else "online")  # fmt: skip
    try:
        images = {tag: wandb.Image(str(path)) for tag, path in figures.items()}
        run.log({**scalars, **images, "trainer/global_step": step})
    finally:
        run.finish()
