"""How fast each model trains through ``python -m src.train``, side by side with a bare loop.

    python scripts/benchmark.py [--fake] [--data-root data] [--models mlp,convnet]
                                [--steps 40] [--repeats 5] [--device auto|cpu|cuda]
                                [--precision 32|bf16-mixed|16-mixed] [--compile]

For each model it builds a run exactly as ``python -m src.train`` does (``src.train.build`` on the
composed Hydra config: the same data module, classifier, callbacks, TensorBoard logger and trainer)
and times training steps of a real ``trainer.fit``, with validation pushed out of the way. Beside
it, a bare loop trains the same model class with the same batch size and optimizer settings on
batches gathered from the same in-memory tensors: ``torch.optim`` (or the NumPy SGD), no Lightning,
no logging. Blocks alternate (project, bare, bare, project, ...) and repeat, and each ratio is taken
between neighbouring blocks, so that the ratios stay fair on a machine that is busy with other work.

Measured, and printed as Markdown tables:

- ms per training step (median over repetitions), the project / bare ratio (median of the paired
  ratios, with their range), the same ratio in CPU time, images per second, and the peak memory
  of the timed steps. A step is timed from the start of one training batch to the start of the
  next: the step, the callbacks, logging, the progress bar and fetching the next batch. The first
  ``--warmup`` steps of every block are not timed. CPU time is the process's (all threads,
  ``time.process_time``): a machine busy with other work disturbs it much less than wall time,
  as long as ``--threads`` leaves no thread waiting for a core (use ``--threads 1`` there).
  Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (the dataset included); on CPU the
  process's peak resident set (Linux ``VmHWM``, reset before each block), which includes the
  libraries and the dataset held in RAM (the same tensors for both variants), and in brackets
  how far it rose above the resident set at the start of the block.
- one evaluation of the test set: ``trainer.test`` of the project, and a bare ``inference_mode``
  pass over the same tensors in batches of ``data.eval_batch_size`` (the ConvNet on a CPU: two
  batches, scaled up to the whole set).
- how much of the default MLP's run goes into its validation intervals (validation split and test
  set every ``trainer.val_check_interval`` steps, checkpoints included): a real fit of two
  intervals, each step timed; an interval's cost is its step's time minus the median step.
- start-up: seconds from launching ``python -m src.train ... trainer.max_steps=1`` to its first
  training step (a ``src.lit.speed.Milestones`` callback added on the command line prints the
  moment), beside ``python -c "import torch"`` and ``python -c "import pytorch_lightning"`` as the
  floors no project code can go under; and the data module's ``load()`` and ``setup()`` in this
  process (CIFAR-10 read from the standard python files, split, normalised).

The NumPy MLP (``model=mlp_numpy``) is included when ``conf/model/mlp_numpy.yaml`` exists. On a
GPU the data module holds the data on the device, and both variants read batches from there;
``--precision`` and ``--compile`` apply to both variants (the project through its config).
"""

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> None:
    """``--threads N``: set before NumPy and torch load, so that their thread pools obey it."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and value.isdigit() and int(value) > 0:
            for name in THREAD_VARIABLES:
                os.environ[name] = value


if __name__ == "__main__":
    _threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

import src.train  # noqa: E402  (also registers the project's config resolvers)
from src.lit.speed import (  # noqa: E402
    Milestones,
    StepClock,
    StepTimer,
    autocast_dtype,
    bare_numpy_steps,
    bare_torch_steps,
    check_compile,
    check_precision,
    synchronize,
    time_block,
)

CONF = ROOT / "conf"

#: The models, as overrides of the real config.
MODELS: dict[str, list[str]] = {
    "mlp_numpy": ["model=mlp_numpy"],
    "mlp": ["model=mlp"],
    "mlp_512_512_256": ["model=mlp", "model.hidden_units=[512,512,256]"],
    "convnet": ["model=convnet"],
}
LABELS = {
    "mlp_numpy": "NumPy MLP [100]",
    "mlp": "MLP [100] (default)",
    "mlp_512_512_256": "MLP [512,512,256]",
    "convnet": "ConvNet",
}
#: Models whose steps are slow on a CPU run this fraction of ``--steps`` (at least 3), and time
#: their test pass on ``SLOW_EVAL_BATCHES`` batches, scaled up to the whole test set.
SLOW_MODELS = {"convnet": 0.1}
SLOW_EVAL_BATCHES = 2


_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def numpy_model_available() -> bool:
    return (CONF / "model" / "mlp_numpy.yaml").exists()


# ------------------------------------------------------------------------------------------------
# Config and runs
# ------------------------------------------------------------------------------------------------


def compose_cfg(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/train.yaml`` as ``python -m src.train OVERRIDES`` would, writing into
    ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.paths.output_root = str(output_dir.parent)
    HydraConfig().set_config(cfg)
    return cfg


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
    project_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    project_cpu: list[float] = field(default_factory=list)
    bare_cpu: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    project_peak: list[tuple[float | None, float | None]] = field(default_factory=list)
    bare_peak: list[tuple[float | None, float | None]] = field(default_factory=list)
    project_eval_s: list[float] = field(default_factory=list)
    bare_eval_s: list[float] = field(default_factory=list)
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
    """Holds one data module per data config, shared by the models that use the same data."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self._splits: dict[str, dict] = {}

    def overrides(self, name: str, extra: list[str]) -> list[str]:
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

    @property
    def device(self) -> torch.device:
        return self.args.device

    def setting(self, name: str) -> Setting:
        out = self.workdir / name
        cfg = compose_cfg(self.overrides(name, []), out)
        numpy_model = "numpy_nn" in cfg.model._target_
        precision = check_precision(cfg.trainer.precision, self.device, numpy_model)
        if self.args.compile:
            check_compile(self.device, numpy_model)
        fraction = SLOW_MODELS.get(name, 1.0) if self.device.type == "cpu" else 1.0
        steps = max(min(self.args.steps, 3), round(self.args.steps * fraction))
        warmup = self.args.warmup if fraction == 1.0 else max(1, self.args.warmup // 2)
        setting = Setting(name, cfg, warmup, steps, self.device, precision, self.args.compile)
        if fraction != 1.0:  # a slow model's test pass is timed on a part, and scaled up
            setting.eval_batches = SLOW_EVAL_BATCHES
        return setting

    def build(self, cfg: DictConfig):
        """``src.train.build`` of ``cfg``; the data module reuses tensors already decoded."""
        with quiet():
            run = src.train.build(cfg)
        key = OmegaConf.to_yaml(
            {k: v for k, v in cfg.data.items() if k not in ("batch_size", "eval_batch_size")}
        )
        if key in self._splits:
            run.datamodule.splits = self._splits[key]  # setup() keeps splits that are there
        return run, key

    def fit(self, cfg: DictConfig, callbacks: list) -> object:
        """A real fit of ``cfg`` with ``callbacks`` added; returns the run."""
        HydraConfig().set_config(cfg)
        run, key = self.build(cfg)
        run.trainer.callbacks.extend(callbacks)
        with quiet():
            run.trainer.fit(run.classifier, datamodule=run.datamodule)
        self._splits.setdefault(key, run.datamodule.splits)
        return run

    # -- the two variants ------------------------------------------------------------------------

    def project_block(self, s: Setting) -> tuple[float, float, tuple, object]:
        cfg = s.cfg.copy()
        with open_dict(cfg):
            cfg.trainer.max_steps = s.warmup + s.steps + 1
            cfg.trainer.val_check_interval = 10**9  # validation is timed on its own
        timer = StepTimer(s.warmup, s.steps, s.device)
        run = self.fit(cfg, [timer])
        if timer.ms_per_step is None:
            raise RuntimeError(f"{s.name}: the fit ended before {s.warmup + s.steps} steps")
        return timer.ms_per_step, timer.cpu_ms_per_step, (timer.peak_mib, timer.base_mib), run

    def bare_block(self, s: Setting, datamodule, seed: int) -> tuple[float, float, tuple]:
        x, y = datamodule.splits["train"]
        if x.device.type != s.device.type and not s.numpy:
            raise RuntimeError(
                f"{s.name}: the data module holds the data on {x.device}, not on "
                f"{s.device}: every batch would be copied to the device"
            )
        net = instantiate(s.cfg.model)
        optimizer_factory = instantiate(s.cfg.optimizer)
        if s.numpy:
            optimizer = optimizer_factory(net.parameters())
            xn, yn = x.numpy(), y.numpy()
            rng = np.random.default_rng(seed)

            def run(steps: int) -> None:
                bare_numpy_steps(net, optimizer, xn, yn, s.batch_size, steps, rng)

        else:
            net = net.to(s.device)
            if s.compile:
                net.compile()
            optimizer = optimizer_factory(net.parameters())
            generator = torch.Generator().manual_seed(seed)
            dtype = autocast_dtype(s.precision)

            def run(steps: int) -> None:
                bare_torch_steps(net, optimizer, x, y, s.batch_size, steps, generator, dtype)

        run(s.warmup)
        seconds, cpu, peak, base = time_block(lambda: run(s.steps), s.device)
        return seconds / s.steps * 1e3, cpu / s.steps * 1e3, (peak, base)

    # -- evaluation ------------------------------------------------------------------------------

    def project_eval(self, s: Setting, run) -> float:
        """Seconds of ``trainer.test`` on the test set (on ``s.eval_batches`` batches if set)."""
        run.trainer.limit_test_batches = s.eval_batches or 1.0
        with quiet():
            synchronize(self.device)
            start = time.perf_counter()
            run.trainer.test(run.classifier, datamodule=run.datamodule, verbose=False)
            synchronize(self.device)
        return time.perf_counter() - start

    def bare_eval(self, s: Setting, run) -> float:
        """Seconds of a bare evaluation (accuracy) of the same network on the same tensors."""
        x, y = run.datamodule.splits["test"]
        batch = int(s.cfg.data.eval_batch_size)
        n = len(y) if s.eval_batches is None else min(len(y), s.eval_batches * batch)
        s.eval_images, s.test_images = n, len(y)
        synchronize(self.device)
        start = time.perf_counter()
        if s.numpy:
            net = run.classifier.net
            xn, yn = x.numpy(), y.numpy()
            correct = sum(
                int((net.forward(xn[i : i + batch]).argmax(1) == yn[i : i + batch]).sum())
                for i in range(0, n, batch)
            )
        else:
            net = run.classifier.net.eval()
            dtype = autocast_dtype(s.precision)
            correct = torch.zeros((), dtype=torch.long, device=x.device)
            with (
                torch.inference_mode(),
                torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None),
            ):
                for i in range(0, n, batch):
                    correct += (net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()
            correct = int(correct)
        synchronize(self.device)
        return time.perf_counter() - start

    # -- the share of validation in a real run ---------------------------------------------------

    def eval_share(
        self, name: str, test_only: bool = False, intervals: int = 3
    ) -> dict[str, float]:
        """Fit ``intervals`` validation intervals of ``name`` as configured (or every
        ``--eval-interval`` steps), every step timed, then time a bare forward pass over the same
        evaluation splits. ``test_only``: no validation split (``data.val_size=0``, the
        assignment's protocol), as ``src.train`` runs it: no best checkpoint to monitor."""
        extra = ["data.val_size=0", "monitor=null", "callbacks.model_checkpoint=null"]
        out = self.workdir / f"{name}_eval_share{'_test_only' if test_only else ''}"
        cfg = compose_cfg(self.overrides(name, extra if test_only else []), out)
        interval = self.args.eval_interval or int(cfg.trainer.val_check_interval)
        full_steps = int(cfg.trainer.max_steps)
        with open_dict(cfg):
            cfg.trainer.max_steps = intervals * interval + 1
            cfg.trainer.val_check_interval = interval
        clock = StepClock(self.device)
        run = self.fit(cfg, [clock])
        gaps = np.diff(clock.starts)
        at = [k * interval - 1 for k in range(1, intervals + 1)]  # the gaps holding validation
        median = float(np.median(np.delete(gaps, at)[3:]))  # the first steps warm up
        evals = [float(gaps[i]) - median for i in at]
        validations = [end - start for start, end in clock.validations]
        bare = [self.bare_forward(run, cfg) for _ in range(3)]
        eval_s = statistics.median(evals)
        n_evals = full_steps // interval
        return {
            "interval": interval,
            "step_s": median,
            "eval_s": eval_s,
            "validation_s": statistics.median(validations) if validations else float("nan"),
            "bare_s": statistics.median(bare),
            "eval_images": sum(
                len(run.datamodule.splits[k][1]) for k in run.datamodule.eval_splits
            ),
            "full_steps": full_steps,
            "n_evals": n_evals,
            "share": n_evals * eval_s / (n_evals * eval_s + full_steps * median),
        }

    def bare_forward(self, run, cfg: DictConfig) -> float:
        """Seconds of a bare ``inference_mode`` forward pass over every evaluation split."""
        net = run.classifier.net
        batch = int(cfg.data.eval_batch_size)
        synchronize(self.device)
        start = time.perf_counter()
        for split in run.datamodule.eval_splits:
            x, _ = run.datamodule.splits[split]
            if isinstance(net, torch.nn.Module):
                with torch.inference_mode():
                    for i in range(0, len(x), batch):
                        net.eval()(x[i : i + batch])
            else:
                xn = x.numpy()
                for i in range(0, len(xn), batch):
                    net.forward(xn[i : i + batch])
        synchronize(self.device)
        return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------
# Start-up and data loading
# ------------------------------------------------------------------------------------------------


def run_timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, float | None, str]:
    """Start time (unix), wall seconds to exit, CPU seconds (None where unknown) and the output
    of a subprocess."""
    try:
        import resource

        def children_cpu() -> float | None:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            return usage.ru_utime + usage.ru_stime

    except ImportError:  # Windows

        def children_cpu() -> float | None:
            return None

    cpu0, start_unix, start = children_cpu(), time.time(), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    seconds, cpu1 = time.perf_counter() - start, children_cpu()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return start_unix, seconds, cpu, done.stdout + done.stderr


STARTUP_KEYS = ("import torch", "import pytorch_lightning", "built", "data", "first_step")


def startup(bench: Benchmark, repeats: int) -> dict[str, list[tuple[float, float | None]]]:
    """(wall, CPU) seconds to import torch, to import Lightning, and from launching
    ``python -m src.train`` to the moments it had built the run, set up the data, and reached its
    first training step; interleaved."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    out = bench.workdir / "startup"
    train = [
        sys.executable,
        "-m",
        "src.train",
        *bench.overrides("mlp", []),
        "trainer.max_steps=1",
        "test=false",
        f"paths.output_root={out}",
        f"hydra.run.dir={out}/run",
        "+callbacks.milestones._target_=src.lit.speed.Milestones",
    ]
    results: dict[str, list[tuple[float, float | None]]] = {k: [] for k in STARTUP_KEYS}
    for _ in range(repeats):
        for module in ("torch", "pytorch_lightning"):
            _, seconds, cpu, _ = run_timed([sys.executable, "-c", f"import {module}"], ROOT, env)
            results[f"import {module}"].append((seconds, cpu))
        start, _, _, output = run_timed(train, ROOT, env)
        stamps = Milestones.parse(output)
        if "first_step" not in stamps:
            raise RuntimeError(f"no first training step in the output of src.train:\n{output}")
        stamps.setdefault("setup_fit", stamps["first_step"])
        for key, name in (("built", "built"), ("data", "setup_fit"), ("first_step", "first_step")):
            unix, cpu = stamps[name]
            results[key].append((unix - start, cpu))
    return results


def data_loading(bench: Benchmark, repeats: int) -> dict[str, list[float]]:
    """Seconds of the data module's ``load()`` (read and decode) and ``setup()`` (load, split,
    normalise, move to the device), each on a fresh data module."""
    cfg = compose_cfg(bench.overrides("mlp", []), bench.workdir / "data")
    times: dict[str, list[tuple[float, float]]] = {"load": [], "setup": []}
    for _ in range(repeats):
        for what in ("load", "setup"):
            dm = instantiate(cfg.data)
            dm.prepare_data()
            cpu, start = time.process_time(), time.perf_counter()
            dm.load() if what == "load" else dm.setup("fit")
            times[what].append((time.perf_counter() - start, time.process_time() - cpu))
            del dm
    return times


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_eval(s: Setting, seconds: list[float]) -> str:
    """Seconds of one pass over the whole test set; ``~`` where scaled up from a part of it."""
    if not seconds:
        return "n/a"
    return f"{'~' if s.eval_scale != 1 else ''}{med(seconds) * s.eval_scale:.2f}"


def med_pair(pairs: list[tuple[float, float | None]]) -> str:
    """Median wall seconds, and in brackets the median CPU seconds where known."""
    wall = med([w for w, _ in pairs])
    cpus = [c for _, c in pairs if c is not None]
    return f"{wall:.2f} ({med(cpus):.2f})" if cpus else f"{wall:.2f}"


def fmt_mib(values: list[tuple[float | None, float | None]]) -> str:
    """The highest peak over the blocks, and the most it grew over the memory held before."""
    peaks = [p for p, _ in values if p is not None]
    growth = [p - b for p, b in values if p is not None and b is not None]
    if not peaks:
        return "n/a"
    return f"{max(peaks):,.0f} (+{max(growth):,.0f})" if growth else f"{max(peaks):,.0f}"


def spread(values: list[float]) -> str:
    return f"**{med(values):.3f}** ({min(values):.2f}-{max(values):.2f})"


def step_table(settings: list[Setting], device: torch.device) -> str:
    memory = "peak GPU MiB (+growth)" if device.type == "cuda" else "peak RSS MiB (+growth)"
    lines = [
        "| model | batch | steps x rounds | project ms/step | bare ms/step | ratio (range) "
        "| CPU-time ratio (range) | project img/s | bare img/s "
        f"| project {memory} | bare {memory} | test pass: project s | bare s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in settings:
        p, b = med(s.project_ms), med(s.bare_ms)
        lines.append(
            f"| {LABELS.get(s.name, s.name)} | {s.batch_size} | {s.steps} x {len(s.ratios)} "
            f"| {p:.2f} | {b:.2f} | {spread(s.ratios)} | {spread(s.cpu_ratios)} "
            f"| {s.batch_size / p * 1e3:,.0f} | {s.batch_size / b * 1e3:,.0f} "
            f"| {fmt_mib(s.project_peak)} | {fmt_mib(s.bare_peak)} "
            f"| {fmt_eval(s, s.project_eval_s)} | {fmt_eval(s, s.bare_eval_s)} |"
        )
    return "\n".join(lines)


TARGETS = {"mlp": 1.10, "convnet": 1.03}


def targets_table(
    settings: list[Setting],
    shares: list[dict[str, float]],
    starts: dict[str, list[float]] | None,
    loads: dict[str, list[float]] | None,
    fake: bool,
) -> str:
    rows = ["| target | measured | met |", "|---|---:|:---:|"]
    by_name = {s.name: s for s in settings}

    def row(what: str, value: float, limit: float, unit: str = "") -> None:
        rows.append(f"| {what} | {value:.3f}{unit} | {'yes' if value <= limit else '**no**'} |")

    for name, limit in TARGETS.items():
        if name in by_name:
            s = by_name[name]
            row(f"{LABELS[name]}: project / bare ms/step <= {limit:.2f}", med(s.ratios), limit)
            row(f"{LABELS[name]}: the same in CPU time <= {limit:.2f}", med(s.cpu_ratios), limit)
    if "mlp_numpy" in by_name and "mlp" in by_name:
        # Paired by repetition: the NumPy and the PyTorch blocks of one round ran close in time.
        for variant, attr in (("project", "project_ms"), ("bare", "bare_ms")):
            a, b = getattr(by_name["mlp_numpy"], attr), getattr(by_name["mlp"], attr)
            ratio = med([x / y for x, y in zip(a, b, strict=False)])
            row(f"NumPy MLP / PyTorch MLP step ({variant}) <= 1.5", ratio, 1.5)
    if starts:
        walls = [w for w, _ in starts["first_step"]]
        cpus = [c for _, c in starts["first_step"] if c is not None]
        row("start-up to first step <= 5 s (wall)", med(walls), 5.0, " s")
        if cpus:
            row("start-up to first step <= 5 s (CPU time)", med(cpus), 5.0, " s")
    if loads and not fake:
        row("CIFAR-10 setup() <= 3 s (wall)", med([w for w, _ in loads["setup"]]), 3.0, " s")
        row("CIFAR-10 setup() <= 3 s (CPU time)", med([c for _, c in loads["setup"]]), 3.0, " s")
    for share, what in zip(shares, ("", ", data.val_size=0"), strict=False):
        row(f"validation share of the default MLP run{what} < 15%", share["share"] * 100, 15, " %")
    return "\n".join(rows)


def environment(args: argparse.Namespace) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = args.device
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    busy = f", load average {load[0]:.1f} on {os.cpu_count()} cores" if load else ""
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    return f"{device.type}: {what}{busy}; {versions}"


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS)
    )
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps per block (ConvNet on CPU: a tenth)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each block")
    p.add_argument("--repeats", type=int, default=5, help="project/bare block pairs per model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads of torch and NumPy (default: theirs); 1 gives steadier numbers on a "
        "machine busy with other work",
    )
    p.add_argument("--precision", default="32-true", help="trainer.precision for both variants")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the network (both variants)"
    )
    p.add_argument("--data-root", default="data", help="the folder that holds cifar-10-batches-py")
    p.add_argument("--fake", action="store_true", help="synthetic data (data=fake): runs anywhere")
    p.add_argument("--eval-repeats", type=int, default=2, help="test passes timed per model")
    p.add_argument("--startup-repeats", type=int, default=2, help="0 skips the start-up timing")
    p.add_argument("--no-eval-share", action="store_true", help="skip the validation-share fit")
    p.add_argument(
        "--eval-interval",
        type=int,
        help="steps between validations in the validation-share fit (default: the model's)",
    )
    p.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU here")
    args.device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if "mlp_numpy" in names and not numpy_model_available():
        log("note: conf/model/mlp_numpy.yaml does not exist (yet): the NumPy MLP is skipped")
        names.remove("mlp_numpy")
    if "mlp_numpy" in names and (
        args.device.type != "cpu" or args.precision not in ("32", "32-true") or args.compile
    ):
        log("note: the NumPy MLP runs on the CPU in its own dtype only: skipped with these options")
        names.remove("mlp_numpy")
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--steps and --repeats must be positive, --warmup non-negative")
    args.models = names
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("src").setLevel(logging.WARNING)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        bench = Benchmark(args, Path(tmp))
        if args.compile and "compile" not in compose_cfg(["data=fake"], Path(tmp) / "probe"):
            raise SystemExit("error: --compile: conf/train.yaml has no `compile` option here")
        try:
            settings = [bench.setting(name) for name in args.models]
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None

        # Round-robin over models, alternating which variant goes first (ABBA), so that every
        # comparison, also across models, is between blocks that ran close together in time.
        runs: dict[str, object] = {}
        for r in range(args.repeats):
            for s in settings:
                log(f"round {r + 1}/{args.repeats}: {s.name}")
                order = (
                    ("project", "bare")
                    if (r % 2 == 0 or s.name not in runs)
                    else ("bare", "project")
                )
                pair: dict[str, tuple[float, float]] = {}
                for variant in order:
                    if variant == "project":
                        ms, cpu, peak, runs[s.name] = bench.project_block(s)
                    else:
                        ms, cpu, peak = bench.bare_block(s, runs[s.name].datamodule, seed=r)
                    getattr(s, f"{variant}_ms").append(ms)
                    getattr(s, f"{variant}_cpu").append(cpu)
                    getattr(s, f"{variant}_peak").append(peak)
                    pair[variant] = ms, cpu
                s.ratios.append(pair["project"][0] / pair["bare"][0])
                s.cpu_ratios.append(pair["project"][1] / pair["bare"][1])

        for s in settings:
            for _ in range(args.eval_repeats):
                log(f"test pass: {s.name}")
                s.project_eval_s.append(bench.project_eval(s, runs[s.name]))
                s.bare_eval_s.append(bench.bare_eval(s, runs[s.name]))

        shares = []
        if not args.no_eval_share and "mlp" in args.models:
            for test_only in (False, True):
                log(f"validation share: mlp{' (data.val_size=0)' if test_only else ''}")
                shares.append(bench.eval_share("mlp", test_only))
        log("data loading")
        loads = data_loading(bench, 3)
        log("start-up")
        starts = startup(bench, args.startup_repeats) if args.startup_repeats else None
    report = render(args, settings, shares, starts, loads, time.perf_counter() - began)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return report


def bare_share(share: dict[str, float], bare_step_s: float) -> float:
    """The share the same evaluations would take in a bare loop: bare forward passes against
    bare training steps."""
    evals = share["n_evals"] * share["bare_s"]
    return evals / (evals + share["full_steps"] * bare_step_s)


def render(args, settings, shares, starts, loads, seconds) -> str:
    data = "synthetic data (data=fake)" if args.fake else f"CIFAR-10 from {args.data_root}"
    options = f"precision {args.precision}" + (", torch.compile" if args.compile else "")
    parts = [
        f"Training steps through `src.train` vs a bare loop ({data}; {options}).",
        f"Machine: {environment(args)}.",
        "",
        step_table(settings, args.device),
        "",
        f"Test pass: one evaluation of the {settings[0].test_images:,} test images "
        "(project: `trainer.test`; bare: an `inference_mode` loop over the same tensors, in "
        "batches of `data.eval_batch_size`); ~: timed on "
        f"{SLOW_EVAL_BATCHES} batches and scaled up. CPU-time ratio: the same ratio in the "
        "process's CPU time (all threads), which a busy machine disturbs less than wall time.",
    ]
    if shares:
        parts += [
            "",
            "Validation in the default MLP run (a real fit of three validation intervals; an "
            "interval's evaluation costs its step's time minus the median step, checkpoints "
            "included; bare: an `inference_mode` forward pass over the same images):",
            "",
            "| evaluated every interval | images | evaluation ms | of which the validation loop "
            "| bare forward ms | ms per training step | evaluations per run | share of the "
            "training loop | a bare loop's share |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        bare_step = {s.name: med(s.bare_ms) / 1e3 for s in settings}.get("mlp", float("nan"))
        names = ("validation split + test set (default)", "test set only (data.val_size=0)")
        for share, what in zip(shares, names, strict=False):
            parts.append(
                f"| {what}, every {share['interval']} steps | {share['eval_images']:,} "
                f"| {share['eval_s'] * 1e3:.0f} | {share['validation_s'] * 1e3:.0f} "
                f"| {share['bare_s'] * 1e3:.0f} | {share['step_s'] * 1e3:.2f} "
                f"| {share['n_evals']} | **{share['share']:.1%}** "
                f"| {bare_share(share, bare_step):.1%} |"
            )
    if loads or starts:
        parts += ["", "| start-up (median) | wall s (CPU s) |", "|---|---:|"]
        if starts:
            labels = {
                "import torch": "`python -c 'import torch'`",
                "import pytorch_lightning": "`python -c 'import pytorch_lightning'`",
                "built": "`python -m src.train`: run built (imports, config, model)",
                "data": "`python -m src.train`: data set up",
                "first_step": "`python -m src.train`: **first training step**",
            }
            for key, label in labels.items():
                parts.append(f"| {label} | {med_pair(starts[key])} |")
        if loads:
            parts += [
                f"| data module `load()` (read, decode) | {med_pair(loads['load'])} |",
                f"| data module `setup()` (load, split, normalise) | {med_pair(loads['setup'])} |",
            ]
    parts += ["", targets_table(settings, shares, starts, loads, args.fake)]
    parts += ["", f"Benchmark wall time {seconds:.0f} s."]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
