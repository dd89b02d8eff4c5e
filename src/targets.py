"""Which ``_target_``s a config read back from elsewhere may name: a run folder's saved config
(``src.evaluate``, ``src.gradcheck run=``, ``resume=``) or a study's stored attributes.

A saved config is a file someone else may have written, and Hydra's ``instantiate`` calls
whatever its ``_target_`` names: ``torch.load`` or ``numpy.load(allow_pickle=True)`` on a crafted
file would run that file's code. So before anything of such a config is built, every
``_target_`` in it is checked against an allow-list of modules (``ALLOWED``, extended by the local
config's ``trusted_targets``, never by the file being opened). A target passes when

- its dotted path starts with an allowed module (``torch.optim`` admits ``torch.optim.SGD``);
- walking that path imports only modules under the allowed one and then reads attributes that are
  not modules (``torch.optim.lr_scheduler.torch.load`` is refused: ``torch`` there is a module);
- the object found is defined in an allowed module (its ``__module__``), so a name re-exported from
  elsewhere (``from torch import load``) is refused too.

Configs composed from the command line for a new run are the user's own and are not checked.
"""

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

#: Modules whose classes and functions a saved config may instantiate.
ALLOWED = (
    "src",
    "pytorch_lightning.Trainer",  # defined in pytorch_lightning.trainer, below
    "pytorch_lightning.trainer",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.trainer",
    "torch.optim",
    "pytorch_lightning.callbacks",
    "pytorch_lightning.loggers",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "optuna.samplers",
    "optuna.pruners",
    "hydra_plugins.dl_optuna_sweeper.report",  # the sweep trial's reporter (ReportToTrial)
)


class UntrustedTargetError(ValueError):
    """A ``_target_`` outside the allow-list; the message names the key and the target."""


def _under(name: str, allowed: Iterable[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def locate_allowed(target: str, allowed: Iterable[str]) -> Any:
    """The object ``target`` names, if the allow-list admits it; else ``UntrustedTargetError``
    (with the reason, without the key). Nothing outside the allowed modules is imported."""
    allowed = tuple(allowed)
    if not isinstance(target, str) or not _under(target, allowed):
        raise UntrustedTargetError(f"{target!r} is not in an allowed module")
    parts = target.split(".")
    module: ModuleType | None = None
    imported = 0  # the longest importable module prefix, imported one level at a time
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if not _under(name, allowed) and not any(a.startswith(name + ".") for a in allowed):
            break
        try:
            module = importlib.import_module(name)
        except ImportError:
            break
        imported = i
    if module is None:
        raise UntrustedTargetError(f"{target!r} cannot be imported")
    obj: Any = module
    for attr in parts[imported:]:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise UntrustedTargetError(f"{target!r} does not exist") from None
        if isinstance(obj, ModuleType):
            raise UntrustedTargetError(f"{target!r} reaches into the module {obj.__name__}")
    defined_in = module.__name__ if obj is module else getattr(obj, "__module__", None) or ""
    if not _under(defined_in, allowed):
        raise UntrustedTargetError(f"{target!r} is {defined_in}'s, not an allowed module's")
    return obj


def _targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, target) of every ``_target_`` in a config tree, depth first."""
    if isinstance(node, DictConfig):
        for k in node:
            child = node._get_node(k)
            path = f"{key}.{k}" if key else str(k)
            if k == "_target_":
                yield key or "<root>", child._value()
            else:
                yield from _targets(child, path)
    elif isinstance(node, ListConfig):
        for j in range(len(node)):
            yield from _targets(node._get_node(j), f"{key}[{j}]")


def check_targets(cfg: DictConfig, trusted: Iterable[str] = (), source: str = "the config") -> None:
    """Refuse ``cfg`` (read from ``source``) if any ``_target_`` in it is not allowed (``ALLOWED``
    plus ``trusted``), in one sentence that names the key and the target, before anything is built.

    Values are read without resolving interpolations, so checking runs no resolver either.
    """
    allowed = (*ALLOWED, *trusted)
    for key, target in _targets(OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg):
        try:
            locate_allowed(target, allowed)
        except UntrustedTargetError as e:
            raise UntrustedTargetError(
                f"{source} is refused: {key}._target_={target} ({e.args[0].split(' ', 1)[1]}); "
                "opening a saved config builds only the project's own classes, torch.optim, "
                "Lightning's callbacks and loggers and Optuna's samplers and pruners (add your "
                "own modules with trusted_targets=[...])"
            ) from None
