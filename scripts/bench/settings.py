"""What the benchmarks run: their models, one ``Setting`` per model, and runs built as
``src.train`` builds them."""

import argparse
import contextlib
import copy
import io
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

import src.build
from src.build import Run
from src.checks import check_compile, check_precision
from src.config import compose

#: The models, as overrides of the real config.
MODELS: dict[str, list[str]] = {
    # Near-zero compute (one linear layer, 8 images a step): its step is the framework's fixed cost.
    "linear": ["model=mlp", "model.hidden_units=[]", "data.batch_size=8"],
    "mlp_numpy": ["model=mlp_numpy"],
    "mlp": ["model=mlp"],
    "mlp_512_512_256": ["model=mlp", "model.hidden_units=[512,512,256]"],
    "convnet": ["model=convnet"],
    "mlp_deep": ["experiment=mlp_deep"],
}
LABELS = {
    "linear": "Linear, batch 8 (fixed cost)",
    "mlp_numpy": "NumPy MLP [100]",
    "mlp": "MLP [100] (default)",
    "mlp_512_512_256": "MLP [512,512,256]",
    "convnet": "ConvNet",
    "mlp_deep": "deep MLP (experiment=mlp_deep)",
}
#: Models whose steps are slow on a CPU run this fraction of ``--steps`` (at least 3), and time
#: their test pass on ``SLOW_EVAL_BATCHES`` batches, scaled up to the whole test set.
SLOW_MODELS = {"convnet": 0.1}
SLOW_EVAL_BATCHES = 2

_T0 = time.perf_counter()


class UsageError(Exception):
    """Options that cannot work, found before any measurement; its message is one sentence."""


class CheckFailed(Exception):
    """A check (``host-copies``, ``gpu-check``) found a problem; its message is the report."""


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet():
    """Hide the progress bar and Lightning's notices (the run's own output, not the benchmark's)."""
    sink = io.StringIO()
    with (
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def quiet_logs(levels: dict[str, int]):
    """Set these loggers' levels for the benchmark, and give them back after (``main`` also runs
    inside other processes, e.g. the tests)."""
    loggers = {name: logging.getLogger(name) for name in levels}
    before = {name: logger.level for name, logger in loggers.items()}
    for name, logger in loggers.items():
        logger.setLevel(levels[name])
    try:
        yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(before[name])


@dataclass
class Blocks:
    """What the timed blocks of one variant (project or bare loop) measured, one entry a block."""

    ms: list[float] = field(default_factory=list)  # wall ms per step
    cpu_ms: list[float] = field(default_factory=list)  # the process's CPU ms per step
    peak: list[tuple[float | None, float | None]] = field(default_factory=list)  # (peak, base)
    eval_s: list[float] = field(default_factory=list)  # seconds of one timed test pass

    def add(self, ms: float, cpu_ms: float, peak: tuple[float | None, float | None]) -> None:
        self.ms.append(ms)
        self.cpu_ms.append(cpu_ms)
        self.peak.append(peak)


@dataclass
class Setting:
    """One model's benchmark: its config, and what was measured."""

    name: str
    cfg: DictConfig
    warmup: int
    steps: int
    device: torch.device
    precision: str
    compile: bool
    project: Blocks = field(default_factory=Blocks)
    bare: Blocks = field(default_factory=Blocks)
    ratios: list[float] = field(default_factory=list)  # project / bare ms, paired blocks
    cpu_ratios: list[float] = field(default_factory=list)
    eval_batches: int | None = None  # test batches per evaluation; None: all of them
    eval_images: int = 0  # images evaluated per timed test pass
    test_images: int = 0  # images in the test set

    @property
    def eval_scale(self) -> float:
        """Factor from a timed test pass to one of the whole test set."""
        return self.test_images / self.eval_images if self.eval_images else 1.0

    @property
    def numpy(self) -> bool:
        return "numpy_nn" in self.cfg.model._target_

    @property
    def batch_size(self) -> int:
        return int(self.cfg.data.batch_size)


class Benchmark:
    """The options of a benchmark and its working folder; builds and fits runs as ``src.train``
    does, and shares one set of decoded tensors between the runs that use the same data.

    ``args`` holds the options every run-based subcommand takes (``scripts.bench.__main__``):
    ``device``, ``fake``, ``data_root``, ``precision`` and ``compile``.
    """

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self._splits: dict[str, dict] = {}

    @property
    def device(self) -> torch.device:
        return self.args.device

    def overrides(self, name: str, extra: list[str]) -> list[str]:
        """``python -m src.train`` overrides of model ``name`` with the benchmark's options."""
        args = self.args
        accelerator = {"cpu": "cpu", "cuda": "gpu"}[self.device.type]
        data = ["data=fake"] if args.fake else [f"paths.data_dir={Path(args.data_root).resolve()}"]
        return [
            *MODELS[name],
            *data,
            f"trainer.accelerator={accelerator}",
            f"trainer.precision={args.precision}",
            *(["compile=true"] if args.compile else []),
            *extra,
        ]

    def compose(self, name: str, extra: list[str], folder: str) -> DictConfig:
        """The resolved config of model ``name``, writing into ``folder`` of the work folder."""
        return compose(self.overrides(name, extra), self.workdir / folder)

    def setting(self, name: str, steps: int = 40, warmup: int = 5) -> Setting:
        """Model ``name``'s setting: ``steps`` timed steps after ``warmup`` untimed ones per block
        (a model in ``SLOW_MODELS`` on a CPU: fewer); ``UsageError`` if the device cannot run it."""
        cfg = self.compose(name, [], name)
        try:
            precision = check_precision(cfg.trainer.precision, self.device)
            if self.args.compile:
                check_compile(self.device)
        except ValueError as e:
            raise UsageError(f"{name}: {e}") from None
        fraction = SLOW_MODELS.get(name, 1.0) if self.device.type == "cpu" else 1.0
        steps = max(min(steps, 3), round(steps * fraction))
        warmup = warmup if fraction == 1.0 else max(1, warmup // 2)
        setting = Setting(name, cfg, warmup, steps, self.device, precision, self.args.compile)
        if fraction != 1.0:  # a slow model's test pass is timed on a part, and scaled up
            setting.eval_batches = SLOW_EVAL_BATCHES
        return setting

    def build(self, cfg: DictConfig) -> Run:
        """The run of ``cfg``, built as ``src.train`` builds it (``src.build.build``); its data
        module reuses the tensors that an earlier fit of the same data decoded."""
        from hydra.core.hydra_config import HydraConfig

        HydraConfig().set_config(cfg)
        with quiet():
            run = src.build.build(cfg)
        splits = self._splits.get(_data_key(cfg))
        if splits is not None:
            run.datamodule.splits = splits  # setup() keeps splits that are there
        return run

    def fit(self, cfg: DictConfig, callbacks: list) -> Run:
        """A real fit of ``cfg`` with ``callbacks`` added; returns the run."""
        run = self.build(cfg)
        run.trainer.callbacks.extend(callbacks)
        with quiet():
            run.trainer.fit(run.classifier, datamodule=run.datamodule)
        self._splits.setdefault(_data_key(cfg), run.datamodule.splits)
        return run

    def training_tensors(self, s: Setting) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split of ``s``'s data as its runs hold it (on the device), from a fit of
        one step (or from an earlier fit of the same data)."""
        run = self.fit(with_trainer(s.cfg, max_steps=1, val_check_interval=10**9), [])
        return run.datamodule.splits["train"]


def _data_key(cfg: DictConfig) -> str:
    """Runs whose data configs agree but for the batch sizes hold the same tensors."""
    data = {k: v for k, v in cfg.data.items() if k not in ("batch_size", "eval_batch_size")}
    return OmegaConf.to_yaml(data)


def with_trainer(cfg: DictConfig, **trainer: object) -> DictConfig:
    """A copy of ``cfg`` with ``trainer`` settings changed."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key, value in trainer.items():
            cfg.trainer[key] = value
    return cfg
