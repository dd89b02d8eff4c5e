"""Saved configs of older runs, read with today's classes.

A run folder keeps the config its run was started with. When the project merges or retires what
such a config names, the saved config is mapped onto the successors as it is read
(``RunFolder.config``), so that older folders still evaluate, gradcheck and resume; each step
says what changed and when.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

_CALLBACKS = "src.lit.callbacks"
#: Merged on 2026-12-01: Lightning calls every hook of every callback on every step, so related
#: duties share one callback. Signals and non-finite losses -> ``SafeStop``; checkpoint tags and
#: random generators -> ``CheckpointExtras``; the second ``ModelCheckpoint`` (``last.ckpt``) ->
#: ``RunCheckpoint(save_last=True)``; Lightning's ``LearningRateMonitor`` and ``ModelSummary`` ->
#: the classifier (``Classifier.learning_rates``, ``on_fit_start``).
SAFE_STOP, EXTRAS, RUN_CHECKPOINT = (
    f"{_CALLBACKS}.{name}" for name in ("SafeStop", "CheckpointExtras", "RunCheckpoint")
)
SIGNALS, NON_FINITE, TAGS, RNG = (
    f"{_CALLBACKS}.{name}"
    for name in ("StopOnSignal", "StopOnNonFiniteLoss", "TagCheckpoints", "RngState")
)
LR_MONITOR = "pytorch_lightning.callbacks.LearningRateMonitor"
LAST = "${paths.output_dir}/checkpoints/last.ckpt"
MODEL_CHECKPOINTS = ("pytorch_lightning.callbacks.ModelCheckpoint", RUN_CHECKPOINT)
RETIRED = (SIGNALS, NON_FINITE, TAGS, RNG, LR_MONITOR)

#: Renamed in November 2026: the NumPy MLP's class and its hidden layers' argument.
OLD_NUMPY_MLP, NUMPY_MLP = "src.numpy_nn.MLP", "src.numpy_nn.NumpyMLP"


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg``, a run's saved config (unresolved), with what was renamed, merged or retired since
    it was saved mapped onto today's classes."""
    _upgrade_numpy_mlp(cfg)
    _upgrade_callbacks(cfg)
    return cfg


def _upgrade_numpy_mlp(cfg: DictConfig) -> None:
    model = cfg.get("model")
    if isinstance(model, DictConfig) and model.get("_target_") == OLD_NUMPY_MLP:
        old = OmegaConf.to_container(model, resolve=False)
        old["_target_"] = NUMPY_MLP
        if "n_hidden" in old:
            old["hidden_units"] = old.pop("n_hidden")
        cfg.model = old


def _upgrade_callbacks(cfg: DictConfig) -> None:
    node = cfg.get("callbacks")
    if not isinstance(node, DictConfig):
        return
    old: dict[str, Any] = OmegaConf.to_container(node, resolve=False)
    if not any(_target(c) in RETIRED for c in old.values()):
        return
    cfg.callbacks = _merged_callbacks(old)
    if "trainer" in cfg and "enable_model_summary" in cfg.trainer:
        cfg.trainer.enable_model_summary = False  # the classifier logs the summary


def _target(node: Any) -> str | None:
    return node.get("_target_") if isinstance(node, dict) else None


def _merged_callbacks(old: dict[str, Any]) -> dict[str, Any]:
    new: dict[str, Any] = {}
    last = old.get("last_checkpoint")
    for key, node in old.items():
        target = _target(node)
        if target in (SIGNALS, NON_FINITE):
            stop = new.setdefault("safe_stop", {"_target_": SAFE_STOP, "checkpoint_path": LAST})
            if target == SIGNALS:
                stop["checkpoint_path"] = node.get("checkpoint_path", LAST)
            else:
                stop["check_every"] = node.get("check_every", 10)
        elif target in (TAGS, RNG):
            extras = new.setdefault("checkpoint_extras", {"_target_": EXTRAS})
            if target == TAGS:
                extras["tags"] = {k: v for k, v in node.items() if k != "_target_"}
        elif target == LR_MONITOR or key == "last_checkpoint":
            continue  # the classifier logs the rate; model_checkpoint writes last.ckpt
        elif key == "model_checkpoint" and target in MODEL_CHECKPOINTS:
            new[key] = _run_checkpoint(node, save_top_k=node.get("save_top_k", 1))
        elif key == "model_checkpoint" and node is None and _target(last) in MODEL_CHECKPOINTS:
            new[key] = _run_checkpoint(last, save_top_k=0)  # no best checkpoint: last.ckpt only
        else:
            new[key] = node
    return new


def _run_checkpoint(node: dict[str, Any], save_top_k: int) -> dict[str, Any]:
    """A saved ``ModelCheckpoint`` node as today's ``RunCheckpoint`` of best and last."""
    upgraded = {
        **node,
        "_target_": RUN_CHECKPOINT,
        "save_top_k": save_top_k,
        "save_last": True,
        "enable_version_counter": False,
        "save_on_train_epoch_end": False,
    }
    upgraded.setdefault("continues_run", "${if_resuming:${resume},true,false}")
    return upgraded
