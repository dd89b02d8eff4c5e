"""``python -m scripts.bench gpu-check``: the checks that need a GPU, as one Markdown report
(printed, and written to ``--output``, default ``gpu_check.md``). Sized to finish in under 8
minutes on one H100-class GPU:

1. the GPU-marked tests (``pytest -m gpu``);
2. ``steps`` on CUDA for every model in fp32, bf16-mixed and with ``--compile``, each model beside
   its bare loop; ``whole-runs`` once, in fp32;
3. a full default ConvNet run through ``src.train`` (5,000 steps, every evaluation), with its wall
   time and test accuracy;
4. ``host-copies``: no training step of the MLP or the ConvNet copies data from host memory.

Each check runs in a process of its own (``python -m scripts.bench ...``, ``python -m pytest``,
``python -m src.train``): one that fails is reported, and the others still run. ``--dry-run`` runs
every check on the CPU, tiny and on synthetic data: it checks this tool. Without CIFAR-10 in
``--data-root`` (and in a dry run) the checks train on synthetic data (``data=fake``) and the report
says so: the timings stand, the accuracy does not.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scripts.bench.settings import CheckFailed, log
from scripts.bench.startup import ROOT
from src.run_folder import RunFolder

#: What the report keeps of pytest's output: test ids and the summary.
PYTEST_LINES = re.compile(r"::|passed|failed|skipped|collected|error")


class Report:
    """The report's sections, and the names of the checks that failed."""

    def __init__(self, lines: list[str]):
        self.lines, self.failed = lines, []

    def section(self, title: str) -> None:
        self.lines += ["", f"## {title}", ""]

    def check(self, name: str, cmd: list[str]) -> str:
        """Run ``cmd`` in the repository root; its output (also on stderr). A failure is noted."""
        log(f">>> {name}: {' '.join(cmd)}")
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        output = done.stdout + done.stderr
        print(output, file=sys.stderr)
        if done.returncode != 0:
            self.failed.append(name)
        return output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="every check on the CPU, tiny")
    p.add_argument("--data-root", default="data", help="the folder that holds cifar-10-batches-py")
    p.add_argument("--output", type=Path, default=Path("gpu_check.md"), help="the report's file")


def check_arguments(args: argparse.Namespace) -> str | None:
    if not args.dry_run and not torch.cuda.is_available():
        return "no CUDA device visible to torch; use --dry-run to check this tool on a CPU"
    return None


def git_commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() or "unknown"


def sizes(dry: bool) -> tuple[list, list[str], list[str]]:
    """The ``steps`` variants (precision, options) and the sizes of ``steps`` and ``whole-runs``."""
    if not dry:
        variants = [("32-true", []), ("bf16-mixed", []), ("32-true", ["--compile"])]
        return variants, ["--repeats", "3"], ["--repeats", "1", "--startup-repeats", "1"]
    # compile and bf16 on a CPU take minutes and test nothing of the GPU
    steps = "--models mlp_numpy,mlp --steps 2 --warmup 1 --repeats 1 --eval-repeats 1"
    whole = "--models linear --steps 2,4 --repeats 1 --startup-repeats 0"
    return [("32-true", [])], [*steps.split(), "--no-eval-share"], whole.split()


def benchmarks(report: Report, dry: bool, common: list[str], work: Path) -> None:
    """``steps`` in every variant, then ``whole-runs``; their reports go into this one."""
    variants, steps_size, whole_size = sizes(dry)
    runs = [
        (f"Benchmark: precision {precision} {' '.join(extra)}".strip(),
         ["steps", "--precision", precision, *extra, *steps_size])
        for precision, extra in variants
    ]  # fmt: skip
    runs.append(("Whole runs, precision 32-true", ["whole-runs", *whole_size]))
    for title, cmd in runs:
        report.section(title)
        out = work / "bench.md"
        bench = [sys.executable, "-m", "scripts.bench", *cmd, *common, "--output", str(out)]
        report.check(title, bench)
        report.lines.append(out.read_text().strip() if out.is_file() else "(no report)")
        out.unlink(missing_ok=True)


def convnet_run(report: Report, dry: bool, train_data: list[str], work: Path) -> None:
    """The default ConvNet through ``python -m src.train``: wall time and final metrics."""
    report.section("Default ConvNet through src.train")
    convnet = ["model=convnet", *train_data]
    if dry:
        convnet += [
            "trainer.accelerator=cpu",
            "trainer.max_steps=2",
            "trainer.val_check_interval=1",
        ]
        convnet += ["data.num_train=100", "data.val_size=20", "data.num_test=40"]
    else:
        convnet += ["trainer=gpu"]
    start = time.perf_counter()
    train = [sys.executable, "-m", "src.train", *convnet]
    report.check("convnet run", [*train, f"hydra.run.dir={work / 'convnet'}"])
    seconds = time.perf_counter() - start
    record = RunFolder(work / "convnet").record()
    report.lines += [
        f"- command: `python -m src.train {' '.join(convnet)}`",
        f"- wall time, process start to exit: {seconds:.1f} s (target on an H100: under 20 s)",
        "- final metrics (run.yaml):",
        *(f"    - {k}: {v:.4f}" for k, v in (record.get("metrics") or {}).items()),
        f"    - status: {record.get('status')}",
    ]


def run(args: argparse.Namespace) -> str:
    """Run the four checks; the report. ``CheckFailed`` (with the report) if one failed."""
    began = time.perf_counter()
    dry = args.dry_run
    data_root = Path(args.data_root).resolve()
    cifar = not dry and (data_root / "cifar-10-batches-py").is_dir()
    note = f"CIFAR-10 from {data_root}" if cifar else "synthetic data (dry run, or no CIFAR-10 in "
    note += "" if cifar else "--data-root): accuracies are meaningless"
    common = ["--device", "cpu" if dry else "cuda", *(["--threads", "1"] if dry else [])]
    common += ["--data-root", str(data_root)] if cifar else ["--fake"]
    device = "CPU (dry run)" if dry else torch.cuda.get_device_name()
    report = Report(
        [
            f"# GPU check ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
            "",
            f"- git: {git_commit()}",
            f"- device: {device}",
            f"- torch {torch.__version__}, data: {note}",
        ]
    )
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        report.section("GPU tests")  # on a CPU, a dry run only lists them
        pytest = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
        output = report.check("gpu tests", [*pytest, *(["--collect-only"] if dry else [])])
        report.lines += [f"    {line}" for line in output.splitlines() if PYTEST_LINES.search(line)]

        benchmarks(report, dry, common, Path(tmp))
        convnet_run(
            report, dry, [f"paths.data_dir={data_root}"] if cifar else ["data=fake"], Path(tmp)
        )

        report.section("Host-to-device copies in training steps")
        size = ["--warmup", "1", "--steps", "2"] if dry else ["--warmup", "5", "--steps", "20"]
        for model in ["mlp"] if dry else ["mlp", "convnet"]:
            cmd = [sys.executable, "-m", "scripts.bench", "host-copies", "--model", model]
            output = report.check(f"host copies {model}", [*cmd, *size, *common])
            report.lines += [f"- {ln}" for ln in output.splitlines() if "host-to-device" in ln]

    minutes = (time.perf_counter() - began) / 60
    report.section("Summary")
    report.lines.append(f"- total wall time: {minutes:.1f} min (target: under 8 on an H100)")
    failed = report.failed
    report.lines.append(f"- FAILED: {', '.join(failed)}" if failed else "- every step passed")
    text = "\n".join(report.lines)
    if failed:
        raise CheckFailed(text)
    return text
