"""scripts/gpu_check.sh is ready for a GPU machine: its CPU dry run goes through every step."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_dry_run_reports_every_step(tmp_path: Path):
    report = tmp_path / "report.md"
    proc = run_check("--dry-run", "--out", str(report), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert proc.stdout.strip() == text.strip()  # one report, printed and written
    for heading in (
        "## GPU tests",
        "## Benchmark: precision 32-true",
        "## Default ConvNet through src.train",
        "## Host-to-device copies in training steps",
        "## Summary",
    ):
        assert heading in text
    assert "test_same_result_on_the_gpu" in text  # GPU tests are listed, not run, on a CPU
    assert "| MLP [100] (default) |" in text  # the benchmark's table made it into the report
    assert "status: completed" in text and "final_test/acc" in text
    assert "host-to-device copies in 2 mlp steps: n/a" in text
    assert "every step passed" in text


def test_refuses_unknown_arguments_and_a_missing_gpu(tmp_path: Path):
    proc = run_check("--fast", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown argument --fast" in proc.stderr
    proc = run_check(tmp_path=tmp_path)  # no --dry-run on a machine without CUDA
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "gpu_check.md").exists()  # nothing half-written
