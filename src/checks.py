"""Everything checked before a run trains, so that bad input fails at once, in one sentence.

Checks only check: ``src.build`` builds, once. ``check_values`` needs nothing built and runs before
a run folder is made (``src.run_folder.ClaimRunFolder``). ``check_run(cfg, datamodule,
classifier)`` is what ``src.train`` calls on a resolved config (``src.config.resolve``) and the data
module and classifier built from it, before the trainer is built, in this order: the config values
that cannot work together, the data (there, or downloadable), the device, precision and
``torch.compile``, the optimizer's settings, and the checkpoint to start from (readable without
running code, of this model, and of its shapes). Each check raises ``ConfigError`` (or the data
module's ``DataError``) whose message names the key to change.

The pieces are public for other entry points: ``load_checkpoint`` reads any checkpoint safely
(Lightning's own loading goes through it too, see ``src.lit.checkpoint_io``), ``read_checkpoint``
adds the check that it holds a given model, ``check_fits`` that its tensors fit a built module.
"""

import pickle
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from src.config import ConfigError
from src.lit.tracking import check_loggers


def check_run(cfg: DictConfig, datamodule: Any, classifier: Any) -> dict | None:
    """Check everything a run of ``cfg`` needs, on its data module and classifier as built from
    it (``src.build``) and before the trainer is built; return the checkpoint to start from
    (``cfg.ckpt_path``), loaded, or None."""
    check_config(cfg)
    check_data(datamodule)
    device = training_device(cfg.trainer.accelerator)
    try:  # the device's limits, then the model's own (its compile_net refused when it was built)
        classifier.check_precision(check_precision(cfg.trainer.precision, device))
        if cfg.get("compile", False):
            check_compile(device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.trainer.get("sync_batchnorm", False) and device.type != "cuda":
        # Lightning would fail inside the DDP set-up with a stack trace.
        raise ConfigError(
            "trainer.sync_batchnorm=true needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU "
            "version); on CPU each process normalises with its own share of the batch"
        )
    try:  # the optimizer's and the schedule's own argument checks, now, not at the first step
        classifier.check_optimizer()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer: {e}") from None
    if cfg.ckpt_path is None:
        return None
    checkpoint = read_checkpoint(cfg.ckpt_path, cfg.model._target_)
    check_fits(checkpoint, classifier, cfg.ckpt_path)
    return checkpoint


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_values(cfg: DictConfig) -> None:
    """Values that cannot work, found without building anything: checked by the run-folder
    callback before a folder is made, and again by ``check_config``."""
    if not _integer(cfg.get("seed")):
        raise ConfigError(f"seed={cfg.get('seed')!r} must be an integer")
    trainer = cfg.trainer
    steps, epochs = trainer.get("max_steps", -1), trainer.get("max_epochs")
    for key, value in (("max_steps", steps), ("max_epochs", epochs)):
        if value is not None and not _integer(value):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer")
    if steps == 0 or (steps is not None and steps < -1):
        raise ConfigError(f"trainer.max_steps={steps} must be positive (or -1 with max_epochs)")
    if steps in (-1, None) and (epochs is None or epochs < 1):
        raise ConfigError(
            f"trainer.max_steps={steps} with trainer.max_epochs={epochs} would train forever: "
            "set one of them to a positive number"
        )


def check_config(cfg: DictConfig) -> None:
    """Config values that cannot work together, in a resolved config (``src.config.resolve``)."""
    check_values(cfg)
    if cfg.ckpt_path == "last":
        raise ConfigError("ckpt_path=last is not resolved: pass the config through resolve()")
    check_loggers(cfg.get("logger"))  # chosen, and their optional extras installed
    if cfg.monitor is not None:
        if cfg.data.get("val_size", 1) == 0:
            raise ConfigError(
                f"monitor={cfg.monitor} needs a validation split, and data.val_size=0 has none"
            )
        if cfg.monitor_mode not in ("min", "max"):
            raise ConfigError(f"monitor_mode={cfg.monitor_mode!r} must be min or max")


def check_data(datamodule: Any) -> None:
    """The data is there, or is downloaded now: missing data is the first thing reported."""
    datamodule.prepare_data()


# ------------------------------------------------------------------------------------------------
# Checkpoints: read without running code, of this model, of its shapes
# ------------------------------------------------------------------------------------------------


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, or holds something other than plain data."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``: tensors and plain Python data
    only (dicts, lists, tuples, strings, numbers), so reading it runs none of its code.

    That is all this project's checkpoints hold, for every model (checked on ``mlp``,
    ``mlp_numpy`` and ``convnet``): the NumPy MLP stores its arrays as tensors,
    ``CheckpointExtras`` the random states as tensors, lists and numbers, and no config is saved
    in them. So no type is added to torch's weights-only allowlist. Anything else is refused with a
    ``CheckpointError`` that names the type.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found is None:
            raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None
        raise CheckpointError(
            f"{path} is refused: it holds {found.group(1)}, and a checkpoint may hold only "
            "tensors and plain data (reading one never runs code from it)"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(checkpoint).__name__}")
    for key, state in checkpoint.items():  # "state_dict", the NumPy MLP's "numpy_state_dict"
        if not str(key).endswith("state_dict"):
            continue
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise CheckpointError(
                f"{path} is not a checkpoint of this project: its {key!r} is not a mapping of "
                "parameter names to tensors"
            )
    return checkpoint


def read_checkpoint(path: str | Path, model_target: str) -> dict:
    """``load_checkpoint``, and check that it is a training checkpoint of ``model_target`` (the
    model's ``_target_``, which ``CheckpointExtras`` writes into every checkpoint)."""
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"ckpt_path={e}") from None
    tags = checkpoint.get("tags")
    trained = tags.get("model") if isinstance(tags, dict) else None
    if trained != model_target or "global_step" not in checkpoint:
        raise CheckpointError(
            f"ckpt_path={path} holds a {trained or 'foreign'} model, but this run trains "
            f"{model_target}"
        )
    return checkpoint


def check_fits(checkpoint: dict, classifier: Any, path: str | Path) -> None:
    """Refuse a checkpoint whose tensors do not fit ``classifier`` (e.g. other layer sizes)."""

    def shapes(ckpt: dict) -> set[tuple[str, tuple[int, ...]]]:
        # Torch parameters in "state_dict"; a module may add its own (the NumPy MLP's arrays).
        sections = {
            k: v for k, v in ckpt.items() if k.endswith("state_dict") and isinstance(v, dict)
        }
        return {(f"{s}.{k}", tuple(v.shape)) for s, d in sections.items() for k, v in d.items()}

    own = {"state_dict": classifier.state_dict()}
    classifier.on_save_checkpoint(own)
    if differences := sorted(shapes(own) ^ shapes(checkpoint))[:2]:
        raise CheckpointError(f"ckpt_path={path} does not fit this model (e.g. {differences})")


# ------------------------------------------------------------------------------------------------
# Device, precision and torch.compile: refuse clearly what the device cannot do
# ------------------------------------------------------------------------------------------------

#: Lightning's spellings of a precision -> its canonical name.
PRECISION_ALIASES = {
    "32": "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "64": "64-true",
    "64-true": "64-true",
    "16-true": "16-true",
    "bf16-true": "bf16-true",
}
#: The precisions this project trains and tests in; Lightning's others pass the checks unchanged.
SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def canonical_precision(precision: object) -> str:
    """``32``, ``"32"``, ``"bf16"`` ... -> ``"32-true"``, ``"bf16-mixed"`` ...; ValueError if
    Lightning would not know it."""
    key = str(precision).strip()
    if key not in PRECISION_ALIASES:
        raise ValueError(
            f"trainer.precision={precision!r} is not a precision; use one of "
            f"{', '.join(SUPPORTED_PRECISIONS)}"
        )
    return PRECISION_ALIASES[key]


def cuda_supports_bf16(device: torch.device) -> bool:
    """Whether the GPU computes in bfloat16 natively (not emulated)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def check_precision(precision: object, device: torch.device | str) -> str:
    """Return the canonical precision if ``device`` can train in it, else raise a ValueError that
    says why and what to use instead.

    Lightning itself would quietly train ``16-mixed`` on a CPU as ``bf16-mixed`` (with a warning);
    here a precision runs as asked or not at all.
    """
    name = canonical_precision(precision)
    device = torch.device(device)
    if name in ("16-mixed", "16-true") and device.type == "cpu":
        raise ValueError(
            f"trainer.precision={precision!r} needs a CUDA GPU (float16 autocast with gradient "
            f"scaling); this run is on {device.type}: use 32 or bf16-mixed"
        )
    if name.startswith("bf16") and device.type == "cuda" and not cuda_supports_bf16(device):
        raise ValueError(
            f"trainer.precision={precision!r}: this GPU ({torch.cuda.get_device_name(device)}) "
            "has no native bfloat16; use 16-mixed or 32"
        )
    return name


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a canonical precision, None for full precision."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def training_device(accelerator: object) -> torch.device:
    """The device that Lightning's ``trainer.accelerator`` setting trains on."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda"):
        return torch.device("cuda")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:  # an accelerator torch has no device name for: Lightning will judge it
        return torch.device("cpu")


def check_compile(device: torch.device | str) -> None:
    """Raise a ValueError that says why if ``torch.compile`` cannot run on ``device``.

    torch.compile's default backend (Inductor) writes Triton kernels for a CUDA GPU and C++ for a
    CPU: it needs Triton on a GPU of compute capability 7.0 or newer, and a C++ compiler on a CPU.
    """
    device = torch.device(device)
    if sys.platform == "win32":
        raise ValueError("compile=true: torch.compile does not support Windows; use compile=false")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not torch.cuda.is_available():
            return  # Lightning reports the missing GPU itself

        capability = torch.cuda.get_device_capability(device)
        if capability < (7, 0):
            raise ValueError(
                f"compile=true: this GPU has compute capability {capability[0]}.{capability[1]}; "
                "torch.compile (Triton) needs 7.0 or newer: use compile=false"
            )
        if not has_triton():
            raise ValueError("compile=true needs Triton on a GPU (pip install triton)")
    elif device.type == "cpu":
        compilers = ("g++", "clang++", "c++")
        if not any(shutil.which(c) for c in compilers):
            raise ValueError(
                "compile=true needs a C++ compiler on a CPU (g++ or clang++), and none is on PATH; "
                "install one or use compile=false"
            )
    else:
        raise ValueError(f"compile=true is supported on cuda and cpu, not on {device.type}")
