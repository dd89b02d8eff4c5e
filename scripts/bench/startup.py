"""Start-up: from launching ``python -m src.train`` to its first training step, beside the imports
no project code can go under; and the data module's ``load()`` and ``setup()``."""

import os
import subprocess
import sys
import time
from pathlib import Path

from hydra.utils import instantiate

from scripts.bench.settings import Benchmark
from scripts.bench.timing import Milestones

ROOT = Path(__file__).resolve().parents[2]


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
        f"+callbacks.milestones._target_={Milestones.__module__}.Milestones",
    ]
    results: dict[str, list[tuple[float, float | None]]] = {k: [] for k in STARTUP_KEYS}
    for r in range(repeats):
        for module in ("torch", "pytorch_lightning"):
            _, seconds, cpu, _ = run_timed([sys.executable, "-c", f"import {module}"], ROOT, env)
            results[f"import {module}"].append((seconds, cpu))
        start, _, _, output = run_timed([*train, f"hydra.run.dir={out}/run{r}"], ROOT, env)
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
    cfg = bench.compose("mlp", [], "data")
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
