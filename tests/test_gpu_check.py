"""``python -m scripts.bench gpu-check`` is ready for a GPU machine: its CPU dry run goes through
every check, and it refuses to run for real without a GPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scripts.bench.__main__ import main
from tests.conftest import ROOT


@pytest.mark.slow  # every check in a process of its own, tiny: a few minutes on 2 cores
def test_dry_run_reports_every_step(tmp_path: Path):
    report = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "gpu-check", "--dry-run", "--output", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert proc.stdout.strip() == text.strip()  # one report, printed and written
    for heading in (
        "## GPU tests",
        "## Benchmark: precision 32-true",
        "## Whole runs, precision 32-true",
        "## Default ConvNet through src.train",
        "## Host-to-device copies in training steps",
        "## Summary",
    ):
        assert heading in text
    assert "test_same_result_on_the_gpu" in text  # GPU tests are listed, not run, on a CPU
    assert "| MLP [100] (default) |" in text  # the steps table made it into the report
    assert "| Linear, batch 8 (fixed cost) |" in text  # and the whole runs' table
    assert "status: completed" in text and "final_test/acc" in text
    assert "host-to-device copies in 2 mlp steps: n/a" in text
    assert "every step passed" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="refuses only where there is no GPU")
def test_refuses_to_run_without_a_gpu(tmp_path: Path, capsys):
    report = tmp_path / "gpu_check.md"
    assert main(["gpu-check", "--output", str(report)]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not report.exists()  # nothing half-written
