"""Run folders: never shared, never silently reused, movable, safe to open, and faults recorded."""

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.run_folder import RunFolder, claim, find_runs
from src.targets import ALLOWED, UntrustedTargetError, check_targets, locate_allowed
from tests.conftest import FAST, ROOT, run_cli, run_main

FAST_CLI = [*FAST, "callbacks.progress_bar=null"]


def run_entry(module: str, *args: str, monkeypatch) -> None:
    """``python -m src.<module> ARGS`` in this process (bad input surfaces as SystemExit)."""
    entry = __import__(f"src.{module}", fromlist=["main"])
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", [module, *args])
    try:
        entry.main()
    finally:
        GlobalHydra.instance().clear()


def finished_run(tmp_path: Path, monkeypatch, name: str, *overrides: str) -> Path:
    run_dir = tmp_path / name
    run_main(*FAST, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
             *overrides, monkeypatch=monkeypatch)  # fmt: skip
    return run_dir


def files_and_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Unique: never shared, never reused
# ------------------------------------------------------------------------------------------------


def test_claim_takes_the_next_free_name_and_refuses_a_named_folder_that_holds_a_run(tmp_path):
    base = tmp_path / "runs" / "2026-01-01_00-00-00_mlp"
    assert claim(base, exact=False) == base
    assert claim(base, exact=False).name == f"{base.name}-2"
    assert claim(base, exact=False).name == f"{base.name}-3"
    with pytest.raises(ValueError, match="already holds a run"):
        claim(base, exact=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim(empty, exact=True) == empty  # an empty folder the user named is fine


def train_at_once(n: int, *args: str) -> list[int]:
    """Start ``python -m src.train ARGS`` ``n`` times at once; their exit statuses."""
    cmd = [sys.executable, "-m", "src.train", *args]
    out = subprocess.DEVNULL
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out) for _ in range(n)]
    return [p.wait(timeout=300) for p in procs]


@pytest.mark.slow
def test_four_runs_started_at_once_get_four_complete_folders(tmp_path):
    outputs = tmp_path / "outputs"
    args = [*FAST_CLI, f"paths.output_root={outputs}", f"paths.data_dir={tmp_path / 'data'}"]
    assert train_at_once(4, *args) == [0] * 4
    runs = find_runs(outputs)
    assert len(runs) == 4
    for run in runs:
        assert run.status == "completed" and "final_test/acc" in run.metrics()
        assert len(list((run.path / "checkpoints").glob("best-step*.ckpt"))) == 1
        assert run.tested_checkpoint().is_file()
        writers = {p.name.split(".")[-2] for p in run.event_files()}  # events...<host>.<pid>.<n>
        assert len(writers) == 1  # one process's curves, not a mix


@pytest.mark.slow
def test_two_sweeps_started_at_once_get_two_sweep_folders(tmp_path):
    outputs = tmp_path / "outputs"
    args = ["-m", *FAST_CLI, f"paths.output_root={outputs}", f"paths.data_dir={tmp_path / 'd'}",
            "seed=1,2"]  # fmt: skip
    assert train_at_once(2, *args) == [0] * 2
    runs = find_runs(outputs)
    assert len(runs) == 4 and len({run.path.parent for run in runs}) == 2
    assert all(run.status == "completed" for run in runs)


@pytest.mark.slow
def test_a_named_folder_that_holds_a_finished_run_is_refused_untouched(
    tmp_path, monkeypatch, capsys
):
    run_dir = finished_run(tmp_path, monkeypatch, "run")
    before = files_and_bytes(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_main(*FAST, f"hydra.run.dir={run_dir}", "seed=3", monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "already holds a run" in err and "Traceback" not in err
    assert files_and_bytes(run_dir) == before


@pytest.mark.slow
def test_a_multirun_into_a_named_sweep_folder_with_jobs_is_refused(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}",
            "seed=1,2"]  # fmt: skip
    run_main(*args, monkeypatch=monkeypatch)
    before = files_and_bytes(sweep)
    with pytest.raises(SystemExit) as exit_info:
        run_main(*args, monkeypatch=monkeypatch)
    assert exit_info.value.code == 1 and "already holds 2 job folders" in capsys.readouterr().err
    assert files_and_bytes(sweep) == before


# ------------------------------------------------------------------------------------------------
# Movable, and the tested weights are the evaluated weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(("trainer.max_steps=25", "trainer.val_check_interval=10"), id="val-split"),
        pytest.param(
            ("data.val_size=0", "trainer.max_steps=25", "trainer.val_check_interval=10"),
            id="no-val-split",  # the last validation (step 20) is not the end (step 25)
        ),
    ],
)
def test_a_moved_run_evaluates_and_resumes_as_in_place(tmp_path, monkeypatch, overrides):
    original = finished_run(tmp_path, monkeypatch, "run", *overrides)
    record = RunFolder(original).record()
    tested = record["tested_checkpoint"]
    assert not Path(tested).is_absolute() and (original / tested).is_file()
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(original, moved)
    shutil.rmtree(original)  # nothing may still point there

    run_entry("evaluate", f"run={moved}", monkeypatch=monkeypatch)
    evaluation = RunFolder(moved).eval_metrics()
    assert evaluation["checkpoint"] == tested
    for name in ("acc", "loss"):
        assert evaluation["test"][name] == pytest.approx(
            record["metrics"][f"final_test/{name}"], abs=1e-6
        )

    run_main(f"resume={moved}", monkeypatch=monkeypatch)
    resumed = RunFolder(moved).record()
    assert resumed["metrics"] == record["metrics"]  # best_val/acc kept, the same test
    assert resumed["tested_checkpoint"] == tested and resumed["status"] == "completed"


def test_resume_of_a_folder_with_no_run_is_refused_and_creates_nothing(
    tmp_path, monkeypatch, capsys
):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        run_main(f"resume={nowhere}", monkeypatch=monkeypatch)
    assert exit_info.value.code == 1 and "no run to resume there" in capsys.readouterr().err
    assert not nowhere.exists()


# ------------------------------------------------------------------------------------------------
# Safe to open
# ------------------------------------------------------------------------------------------------


class _WritesMarker:
    """Unpickling this writes a file: the proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


LOADERS = {
    "torch.load": {"f": "{file}", "weights_only": False},
    "numpy.load": {"file": "{file}", "allow_pickle": True},
    "joblib.load": {"filename": "{file}"},
}


@pytest.mark.slow
@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("key", ["data", "optimizer", "callbacks.evil"])
def test_a_crafted_saved_config_is_refused_by_every_entry_point(
    tmp_path, monkeypatch, capsys, mlp_finished_run, loader, key
):
    run_dir = tmp_path / "crafted"
    shutil.copytree(mlp_finished_run, run_dir)
    marker, payload = tmp_path / "marker", tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(_WritesMarker(marker)))
    node = {"_target_": loader, **{k: str(v).format(file=payload)
                                   for k, v in LOADERS[loader].items()}}  # fmt: skip
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    OmegaConf.update(config, key, node, force_add=True)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")

    for module, args, status in (
        ("evaluate", [f"run={run_dir}"], 1),
        ("gradcheck", [f"run={run_dir}"], 2),
        ("train", [f"resume={run_dir}"], 1),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_entry(module, *args, monkeypatch=monkeypatch)
        err = capsys.readouterr().err
        assert exit_info.value.code == status, (module, err)
        assert f"{key}._target_={loader}" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.fixture(scope="module")
def mlp_finished_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return finished_run(tmp_path, monkeypatch, "run")


ALLOWED_TARGETS = (
    "torch.optim.SGD",
    "src.lit.Classifier",
    "pytorch_lightning.Trainer",
    "pytorch_lightning.callbacks.ModelCheckpoint",
    "optuna.pruners.MedianPruner",
)
REFUSED_TARGETS = (
    "torch.load",
    "numpy.load",
    "builtins.eval",
    "os.system",
    "src.checks.torch.load",  # through a module that an allowed one imports
    "torch.optim.lr_scheduler.torch.load",
    "src.lit.checkpoint_io.TorchCheckpointIO",  # Lightning's, re-exported
)


def test_the_allow_list_follows_names_not_prefixes():
    for allowed in ALLOWED_TARGETS:
        locate_allowed(allowed, ALLOWED)
    for refused in REFUSED_TARGETS:
        with pytest.raises(UntrustedTargetError):
            locate_allowed(refused, ALLOWED)
    locate_allowed("tests.killer.KillAtStep", (*ALLOWED, "tests"))  # a user's own modules


def test_check_targets_names_the_key_and_reads_no_interpolation():
    cfg = OmegaConf.create({"a": {"b": [{"_target_": "os.system", "command": "${oops:1}"}]}})
    with pytest.raises(UntrustedTargetError, match=r"a\.b\[0\]\._target_=os\.system"):
        check_targets(cfg)


# ------------------------------------------------------------------------------------------------
# Faults, and bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["read_only", "full"])
def test_a_folder_that_cannot_take_checkpoints_mid_run_fails_cleanly_and_resumes(tmp_path, kind):
    run_dir = tmp_path / "run"
    breaker = ["+callbacks.breaker._target_=tests.killer.FailWritesAfterStep",
               "+callbacks.breaker.step=4", f"+callbacks.breaker.kind={kind}"]  # fmt: skip
    done = run_cli(*FAST_CLI, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
                   *breaker, cwd=ROOT)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: cannot write the checkpoint") and "intact" in last_line
    record = RunFolder(run_dir).record()
    assert record["status"] == "failed" and "cannot write the checkpoint" in record["error"]
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # nothing half-written
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3  # the last good one: the validation at step 3

    resumed = run_cli(f"resume={run_dir}", "trusted_targets=[tests]", cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert RunFolder(run_dir).status == "completed"


BAD_INPUTS = {
    "seed=abc": "seed='abc' must be an integer",
    "trainer.max_steps=-1": "would train forever",
    "trainer.max_steps=0": "trainer.max_steps=0 must be positive",
    "trainer.max_steps=abc": "trainer.max_steps='abc' must be an integer",
}


@pytest.mark.slow
@pytest.mark.parametrize("override", sorted(BAD_INPUTS))
def test_bad_values_are_one_sentence_and_create_nothing(tmp_path, monkeypatch, capsys, override):
    outputs = tmp_path / "outputs"
    with pytest.raises(SystemExit) as exit_info:
        run_main(*FAST, f"paths.output_root={outputs}", override, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and BAD_INPUTS[override] in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not outputs.exists()
    with pytest.raises(SystemExit) as exit_info:
        run_entry("gradcheck", "data=fake", override, monkeypatch=monkeypatch)
    assert exit_info.value.code == 2 and BAD_INPUTS[override] in capsys.readouterr().err


CHECKPOINTS = {
    "a list": [1, 2, 3],
    "non-tensor weights": {
        "state_dict": {"net.layers.0.weight": "not a tensor"},
        "global_step": 1,
    },  # fmt: skip
}


@pytest.mark.parametrize("what", sorted(CHECKPOINTS))
def test_a_malformed_checkpoint_is_one_sentence_everywhere(
    tmp_path, monkeypatch, capsys, mlp_finished_run, what
):
    path = tmp_path / "bad.ckpt"
    torch.save(CHECKPOINTS[what], path)
    outputs = tmp_path / "outputs"
    for module, args, status in (
        ("train", [*FAST, f"paths.output_root={outputs}", f"ckpt_path={path}"], 1),
        ("evaluate", [f"run={mlp_finished_run}", f"ckpt_path={path}"], 1),
        ("gradcheck", ["data=fake", f"ckpt_path={path}"], 2),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_entry(module, *args, monkeypatch=monkeypatch)
        err = capsys.readouterr().err
        assert exit_info.value.code == status, (module, err)
        assert "bad.ckpt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not outputs.exists()
