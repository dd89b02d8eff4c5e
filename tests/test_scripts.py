"""The user's tools ``scripts.plot_curves`` and ``scripts.summarize`` on a tiny real sweep."""

import contextlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from scripts import plot_curves, summarize
from tests.conftest import FAST, ROOT, run_main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two finished jobs (0, 1), one refused before training (2), three stopped mid-training."""
    root = tmp_path_factory.mktemp("sweep")
    # hidden_units=[0] is refused when the last job builds its model: Hydra stops the sweep there
    # (or goes on, with a launcher that tolerates failures); either way its folder remains.
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.suppress(SystemExit):
        run_main("-m", *FAST, f"paths.output_root={root}", f"paths.data_dir={root}/data",
                 "model.hidden_units=[16],[32,16],[0]", "hydra.sweep.dir=" + str(root / "sweep"),
                 monkeypatch=monkeypatch)  # fmt: skip
    sweep = root / "sweep"
    # As jobs leave their folders when they stop before the end (curves up to step 4, no final
    # metrics): 7 diverged (its run.yaml says why), 8 stopped on SIGTERM, 9 was killed (SIGKILL
    # leaves its run.yaml saying "running").
    overrides = (sweep / "0" / ".hydra" / "overrides.yaml").read_text()
    records = {"7": {"status": "failed", "error": "the loss became NaN or infinite at step 4"},
               "8": {"status": "interrupted"}, "9": {"status": "running"}}  # fmt: skip
    for job, record in records.items():
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "overrides.yaml").write_text(overrides.replace("=[16]", "=[64]"))
        (sweep / job / "run.yaml").write_text(yaml.safe_dump(record))
        with SummaryWriter(str(sweep / job)) as writer:
            for step in range(1, 5):
                writer.add_scalar("train/loss", 2.0 / step, step)
    return sweep


def write_job(sweep: Path, name: str, lr: str, val: float, test: float) -> None:
    """A completed job: its curves in the events, its final metrics only in its run.yaml."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n- data=fake\n")
    with SummaryWriter(str(job)) as writer:
        for step, acc in ((10, val / 2), (20, val), (30, val / 3)):  # the best at step 20
            writer.add_scalar("val/acc", acc, step)
            writer.add_scalar("val/loss", 1 - acc, step)
    metrics = {"best_val/acc": val, "final_test/acc": test, "final_test/loss": 1 - test}
    times = {"started": "2026-01-01T12:00:00+00:00", "finished": "2026-01-01T12:03:00+00:00"}
    record = {"status": "completed", "metrics": metrics, **times}
    (job / "run.yaml").write_text(yaml.safe_dump(record))


def test_summary_ranks_by_validation_never_by_test(tmp_path):
    write_job(tmp_path, "0", "0.1", val=0.5, test=0.9)
    write_job(tmp_path, "1", "0.01", val=0.6, test=0.4)
    table, shared = summarize.summarize(tmp_path)
    assert list(table.job) == ["1", "0"] and list(table["optimizer.lr"]) == ["0.01", "0.1"]
    assert shared == {"data": "fake"}  # the same in every job: not a column
    # Final metrics as run.yaml recorded them; val_loss where the best val_acc was logged.
    assert table.val_acc[0] == 0.6 and table.test_acc[0] == 0.4 and table.test_loss[0] == 0.6
    assert table.val_loss[0] == pytest.approx(0.4) and list(table.steps) == [30, 30]
    assert list(table.wall_min) == [3.0, 3.0]


@pytest.mark.slow
def test_summary_lists_every_job_with_failed_ones_last(sweep):
    assert summarize.main([str(sweep)]) == 0
    table = pd.read_csv(sweep / "summary.csv", dtype={"job": str})
    assert list(table.job[2:]) == ["2", "7", "8", "9"]  # after the finished ones, in job order
    ok, failed = table[table.status == "completed"], table[table.status != "completed"]
    assert set(ok.job) == {"0", "1"}
    assert list(failed.status) == ["failed", "failed", "interrupted", "running"]  # as recorded
    errors = list(failed.error.fillna(""))
    assert errors[1:] == ["the loss became NaN or infinite at step 4", "", ""]
    assert "hidden_units" in errors[0] or not errors[0]  # as far as src.train records refusals
    assert list(ok.val_acc) == sorted(ok.val_acc, reverse=True)
    assert ok[["val_acc", "val_loss", "test_acc", "test_loss"]].notna().all().all()
    assert failed.test_acc.isna().all() and list(failed.steps) == [0, 4, 4, 4]
    assert "model.hidden_units" in table.columns and "data" not in table.columns

    markdown = (sweep / "summary.md").read_text()
    assert markdown.count("| failed |") == 2 and markdown.count("| interrupted |") == 1
    assert markdown.count("| running |") == 1
    assert "`data=fake`" in markdown and "NaN or infinite" in markdown


def test_summary_of_a_folder_without_jobs_is_an_error(tmp_path, capsys):
    assert summarize.main([str(tmp_path)]) == 1
    assert "no job folders" in capsys.readouterr().err


def test_plots_one_figure_per_run_and_an_overlay(sweep, tmp_path):
    jobs = [sweep / "0", sweep / "1"]
    assert plot_curves.main([*map(str, jobs), "--out", str(tmp_path), "--smooth", "3"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["0.png", "1.png"]

    overlay = tmp_path / "compare.png"
    args = [*map(str, jobs), "--overlay", str(overlay), "--labels", "a", "b", "--splits", "test"]
    assert plot_curves.main(args) == 0
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_each_logged_split(sweep):
    scalars = plot_curves.read_scalars(sweep / "0")
    fig = plot_curves.plot({"run": scalars}, ["train", "val", "test"], smooth=1)
    loss, acc = fig.axes
    assert [line.get_label() for line in acc.lines] == ["train", "val", "test"]
    steps = list(acc.lines[2].get_xdata())
    assert steps == [3, 6]  # the test set at every validation interval
    assert all(0 <= v <= 1 for v in acc.lines[2].get_ydata())
    assert loss.get_yscale() == "log" and not any(math.isnan(v) for v in loss.lines[0].get_ydata())


def test_plot_skips_runs_without_logs(sweep, tmp_path, capsys):
    """Job 2 failed before it logged anything: its folder is skipped, the others are drawn."""
    assert plot_curves.main([str(sweep / "2"), str(sweep / "0"), "--out", str(tmp_path)]) == 0
    assert "skipped" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["0.png"]
    assert plot_curves.main([str(sweep / "2")]) == 1


def test_no_module_edits_sys_path():
    """The tools run as ``python -m scripts.<tool>`` from the repository root: none of the
    project's modules puts a folder on ``sys.path`` to find the others."""
    edit = re.compile(r"sys\.path\s*(\.(insert|append|extend)\(|\[|\+?=)")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "scripts", "tests", "hydra_plugins")
        for path in (ROOT / folder).rglob("*.py")
        if edit.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.slow  # a fresh Python process imports torch: several seconds on 2 cores
def test_a_tool_runs_as_a_module_and_refuses_bad_input_in_one_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.keep_records", str(tmp_path / "none"), str(tmp_path / "d")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip().endswith("is not a folder")
    assert "Traceback" not in done.stderr and not (tmp_path / "d").exists()
