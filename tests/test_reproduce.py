"""src.reproduce: a tiny 2-seed table's records rerun exactly, a tampered record differs, a killed
reproduction continues without rerunning finished seeds, and bad input is refused in a sentence."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from src import reproduce
from src.reproduce import plan, verdicts
from tests.conftest import FAST, ROOT, run_cli

# Checkpoints at steps 4 and 8: a run killed at step 6 continues from step 4.
TABLE = [*FAST, "trainer.max_steps=12", "trainer.val_check_interval=4"]
TRUST_KILLER = "trusted_targets=[tests.killer]"
KILL = [
    "+callbacks.killer._target_=tests.killer.KillAtStep",
    "+callbacks.killer.step=6",
    "+callbacks.killer.group=true",
]


def reproduce_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m src.reproduce ARGS`` in a process group of its own (the killer's signal to its
    group must not reach pytest)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "src.reproduce", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, start_new_session=True,
    )  # fmt: skip


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A table's records as src.train leaves them: a multirun of seeds 0 and 1 on fake data."""
    work = tmp_path_factory.mktemp("records")
    table = work / "results" / "tiny"
    made = run_cli("-m", *TABLE, f"paths.output_root={work / 'outputs'}", "seed=0,1",
                   f"hydra.sweep.dir={table}", cwd=work)  # fmt: skip
    assert made.returncode == 0, made.stderr
    for checkpoints in table.glob("*/checkpoints"):
        shutil.rmtree(checkpoints)  # as scripts/keep_records.py keeps them
    return table


@pytest.fixture(scope="module")
def reproduced(records, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The records rerun, two at a time."""
    out = tmp_path_factory.mktemp("reproduced") / "tiny"
    result = reproduce_cli(str(records), "--jobs", "2", "--out", str(out), cwd=out.parent)
    return out, result


@pytest.mark.slow
def test_the_records_reproduce_exactly(records, reproduced):
    out, result = reproduced
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{records}: records made at") and "versions as recorded" in lines[0]
    for seed in (0, 1):
        assert any(f"{seed} (seed {seed}): started: python -m src.train" in ln for ln in lines)
        assert any(f"{seed} (seed {seed}): completed in" in ln for ln in lines)
        assert (
            read_yaml(out / str(seed) / "run.yaml")["metrics"]
            == read_yaml(records / str(seed) / "run.yaml")["metrics"]
        )
    assert "**exact**" in result.stdout and lines[-1].startswith("1 exact;")
    report = (out / "reproduction.md").read_text()
    parts = ("**exact**", "## Machine", "## Package versions", "| torch | 2.", "| 1 | 1 | yes |")
    for part in parts:
        assert part in report
    # The recorded data.root/paths are this machine's, not the record's.
    assert f"paths.output_root={records.parents[1]}" not in result.stdout


@pytest.mark.slow
def test_a_tampered_record_differs(records, reproduced, tmp_path):
    out, _ = reproduced
    table = tmp_path / "tiny"
    shutil.copytree(records, table)
    # One metric, in both runs: tampering one run alone would widen the recorded spread, and
    # with it the tolerance, by as much as the mean moves (src.reproduce.verdicts).
    for seed in ("0", "1"):
        record = read_yaml(table / seed / "run.yaml")
        record["metrics"]["final_test/acc"] += 0.1
        if seed == "1":
            record["git"]["commit"] = "0" * 40
            record["versions"]["torch"] = "1.0.0"
        (table / seed / "run.yaml").write_text(yaml.safe_dump(record))
    again = tmp_path / "out"
    shutil.copytree(out, again)  # finished runs are not rerun: only the comparison changes

    result = reproduce_cli(str(table), "--out", str(again), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert "commit 0000000, " in first and "the code may differ" in first
    assert f"torch {torch.__version__.split('+')[0]} (recorded 1.0.0" in first
    assert "finished in an earlier reproduction, skipped" in result.stdout
    assert "**differs**" in result.stdout and "| final_test/acc |" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("1 differs;")


@pytest.mark.slow
def test_a_killed_reproduction_continues_without_rerunning_finished_seeds(records, tmp_path):
    out = tmp_path / "out"
    first = reproduce_cli(str(records), "--runs", "1", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (out / "0" / "run.yaml").is_file() and not (out / "1").exists()
    finished = (out / "0" / "run.yaml").read_text()

    killed = reproduce_cli(str(records), "--out", str(out), *KILL, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "0 (seed 0): finished in an earlier reproduction, skipped" in killed.stdout
    assert read_yaml(out / "1" / "run.yaml")["status"] == "running"
    assert torch.load(out / "1" / "checkpoints" / "last.ckpt")["global_step"] == 4

    # The saved config names the killer: resuming it needs it trusted (src.targets).
    resumed = reproduce_cli(str(records), "--out", str(out), TRUST_KILLER, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "0 (seed 0): finished in an earlier reproduction, skipped" in resumed.stdout
    assert f"1 (seed 1): resumed: python -m src.train resume={out / '1'}" in resumed.stdout
    assert (out / "0" / "run.yaml").read_text() == finished  # seed 0 was not run again
    assert "resumed" in read_yaml(out / "1" / "run.yaml")
    assert "**exact**" in resumed.stdout
    segments = read_yaml(out / "reproduce.yaml")["runs"]["1"]["segments"]
    assert [s["how"] for s in segments] == ["start", "resume"] and "seconds" not in segments[0]


def hand_made_record(folder: Path, overrides: list[str]) -> Path:
    """A completed run's record as src.train writes it, without training: the saved config, the
    overrides, and run.yaml."""
    (folder / ".hydra").mkdir(parents=True)
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {"best_val/acc": 0.5, "final_test/acc": 0.5, "final_test/loss": 1.5}
    (folder / "run.yaml").write_text(yaml.safe_dump({"status": "completed", "metrics": metrics}))
    return folder


def test_a_record_this_checkout_cannot_build_is_refused(tmp_path, capsys):
    hand_made_record(tmp_path / "tiny" / "0", ["data=fake", "seed=0"])
    hand_made_record(tmp_path / "tiny" / "1", ["data=fake", "model=no_such_model", "seed=1"])
    out = tmp_path / "out"

    assert reproduce.main([str(tmp_path / "tiny"), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "tiny/1: this checkout cannot build the record's config" in captured.err
    assert "model/no_such_model" in captured.err
    assert not out.exists()


def test_the_command_is_the_records_overrides_less_the_machines_keys(tmp_path):
    # As an Optuna sweep's job records them: an interpolation that only the job resolves.
    overrides = ["data=fake", "+callbacks.trial.monitor=${monitor}", "data.root=/elsewhere",
                 "paths.output_root=/elsewhere", "seed=3"]  # fmt: skip
    hand_made_record(tmp_path / "tiny" / "a", overrides)
    [row] = plan.read_rows(tmp_path / "tiny", tmp_path / "out", None)
    [job] = row.jobs
    assert job.seed == 3
    job.how = "start"
    assert job.command(["data.root=/here"]) == [
        "data=fake", "+callbacks.trial.monitor=${monitor}", "seed=3",
        "data.root=/here", f"hydra.run.dir={tmp_path / 'out' / 'a'}",
    ]  # fmt: skip
    job.how = "resume"
    assert job.command(["data.root=/here", "+x=1"]) == [
        f"resume={tmp_path / 'out' / 'a'}", "data.root=/here",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: tmp / "missing", "is not a folder"),
        (lambda tmp: tmp, "holds no run records"),
    ],
)
def test_a_missing_or_foreign_folder_is_one_sentence(make, expected, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    assert reproduce.main([str(make(tmp_path)), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_something_else_is_refused(tmp_path, capsys):
    hand_made_record(tmp_path / "tiny" / "0", ["data=fake", "seed=0"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("")
    assert reproduce.main([str(tmp_path / "tiny"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "is not a reproduction folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--runs", "-1"], ["not-an-override"]])
def test_bad_arguments_are_one_sentence(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main([str(tmp_path), *args])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# The verdict rules (src.reproduce.verdicts)
# ------------------------------------------------------------------------------------------------


def pair(name, recorded, rerun):
    return name, {"final_test/acc": recorded}, None if rerun is None else {"final_test/acc": rerun}


def test_equal_metrics_are_exact():
    row = verdicts.compare_row([pair("0", 0.47, 0.47), pair("1", 0.48, 0.48)])
    assert row.verdict == "exact" and not row.problems


def test_the_tolerance_is_two_standard_errors_with_a_floor():
    # Recorded 0.40 and 0.50: std 0.0707, 2 * std / sqrt(2) = 0.1.
    assert verdicts.tolerance([0.40, 0.50]) == pytest.approx(0.1)
    assert verdicts.tolerance([0.47, 0.47]) == 0.005  # no spread: the floor
    assert verdicts.tolerance([0.47]) == 0.005  # a single run
    within = verdicts.compare_row([pair("0", 0.40, 0.44), pair("1", 0.50, 0.54)])
    assert within.verdict == "within"  # mean 0.49 against 0.45: 0.04 inside 0.1
    beyond = verdicts.compare_row([pair("0", 0.40, 0.52), pair("1", 0.50, 0.62)])
    assert beyond.verdict == "differs"  # 0.12 outside 0.1
    assert (
        verdicts.compare_row([pair("0", 0.47, 0.474), pair("1", 0.47, 0.474)]).verdict == "within"
    )
    assert (
        verdicts.compare_row([pair("0", 0.47, 0.476), pair("1", 0.47, 0.476)]).verdict == "differs"
    )


def test_a_rerun_that_did_not_complete_differs():
    row = verdicts.compare_row([pair("0", 0.47, 0.47), pair("1", 0.48, None)])
    assert row.verdict == "differs" and row.problems == ["1 did not complete"]
    missing = verdicts.compare_row([("0", {"final_test/acc": 0.5, "best_val/acc": 0.5},
                                     {"final_test/acc": 0.5})])  # fmt: skip
    assert missing.verdict == "differs" and missing.problems == ["0 has no best_val/acc"]
