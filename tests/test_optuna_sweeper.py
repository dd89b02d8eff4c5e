"""The project's Optuna sweeper (hydra_plugins/dl_optuna_sweeper): a study that persists in the
sweep folder, resumes after a crash, prunes through its storage, and is shared by processes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import yaml
from optuna.trial import TrialState

from scripts import summarize
from tests.conftest import ROOT, run_cli, run_main
from tests.test_train import scalars

SEARCH = ["hparams_search=mlp_optuna", "trainer.max_steps=6", "trainer.val_check_interval=3"]


class KillInTrial(pl.Callback):
    """SIGKILL this process (the sweep's, with Hydra's basic launcher) at ``step`` of the trial
    numbered ``trial``, as a crash or a cluster's pre-emption would."""

    def __init__(self, trial: int, step: int):
        self.trial, self.step = trial, step

    def on_train_batch_end(self, trainer: pl.Trainer, *_) -> None:
        reporter = next(c for c in trainer.callbacks if hasattr(c, "pruned_at_step"))
        if reporter.number == self.trial and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def load(sweep: Path) -> optuna.Study:
    """The sweep's study, through Optuna's own API only."""
    backend = optuna.storages.journal.JournalFileBackend(str(sweep / "optuna_journal.log"))
    storage = optuna.storages.JournalStorage(backend)
    return optuna.load_study(study_name="mlp_optuna", storage=storage)


def folders(sweep: Path) -> list[str]:
    return sorted((p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=int)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of a folder with its size and modification time: equal if nothing was touched."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_default_storage_is_a_journal_in_the_sweep_folder_that_optuna_reloads(
    fast_overrides, tmp_path, monkeypatch
):
    sweep = tmp_path / "sweep"
    run_main("-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=2",
             f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch)  # fmt: skip
    study = load(sweep)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1] and folders(sweep) == ["0", "1"]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:  # the value is the job's best val/acc, reported at each validation
        val_acc = scalars(sweep / str(trial.number))["val/acc"]
        assert trial.value == pytest.approx(max(val_acc.values()))
        assert trial.intermediate_values == pytest.approx(val_acc)
        assert set(trial.params) == set(study.user_attrs["search_space"])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number
    assert results["best_job_dir"] == str(sweep / str(study.best_trial.number))


@pytest.mark.slow  # two sweep processes, each importing torch: ~1 min on 2 cores
def test_a_killed_search_resumes_without_rerunning_finished_trials(fast_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=4",
               f"hydra.sweep.dir={sweep}",
               "+callbacks.killer._target_=tests.test_optuna_sweeper.KillInTrial",
               "+callbacks.killer.trial=2", "+callbacks.killer.step=2"]  # fmt: skip
    killed = run_cli(*command, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert folders(sweep) == ["0", "1", "2"]
    before = {name: snapshot(sweep / name) for name in ("0", "1")}

    resumed = run_cli(*command, cwd=tmp_path)  # the same command continues the study
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = load(sweep).get_trials()
    ended = [t.number for t in trials if t.state == TrialState.COMPLETE]
    assert ended == [0, 1, 3, 4]  # 4 in total: 0 and 1 not rerun, the killed 2 replaced
    assert trials[2].state == TrialState.FAIL
    assert trials[2].user_attrs["failed_because"] == "its sweep process died"
    # One folder per trial number, the killed trial's kept as it was left: never overwritten.
    assert folders(sweep) == ["0", "1", "2", "3", "4"]
    assert {name: snapshot(sweep / name) for name in ("0", "1")} == before


def test_a_pruned_trial_stops_early_keeps_its_outputs_and_shows_in_the_summary(
    fast_overrides, tmp_path, monkeypatch
):
    """A threshold pruner and a hopeless learning rate: that trial ends PRUNED at its first
    validation, with its curves, checkpoints and a run.yaml that says so."""
    sweep = tmp_path / "sweep"
    fixed = ["model.hidden_units=[32]", "model.neg_slope=0.0", "model.dropout=0.0",
             "model.norm=none", "optimizer=adam", "optimizer.weight_decay=0.0",
             "data.normalize=mean_image"]  # fmt: skip
    run_main("-m", *fast_overrides, *SEARCH, *fixed, "trainer.max_steps=9",
             "optimizer.lr=choice(1e-2,1e-9)", "hydra.sweeper.n_trials=2",
             "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
             "~hydra.sweeper.sampler.n_startup_trials", "hydra.sweeper.pruner=null",
             "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.3}",
             f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch)  # fmt: skip
    trials = {t.params["optimizer.lr"]: t for t in load(sweep).get_trials()}
    hopeless = trials[1e-9]
    assert hopeless.state == TrialState.PRUNED
    assert list(hopeless.intermediate_values) == [3]  # stopped at its first validation
    job = sweep / str(hopeless.number)
    record = yaml.safe_load((job / "run.yaml").read_text())
    assert record["status"] == "pruned" and record["pruned_at_step"] == 3
    assert max(scalars(job)["val/acc"]) == 3 and (job / "checkpoints" / "last.ckpt").is_file()

    assert summarize.main([str(sweep)]) == 0
    table, _ = summarize.summarize(sweep)
    row = table[table.job == str(hopeless.number)].iloc[0]
    assert row.status == "pruned" and row.steps == 3
    assert "| pruned |" in (sweep / "summary.md").read_text()
    assert (sweep / "study_intermediate_values.png").stat().st_size > 0


@pytest.mark.slow  # two sweep processes at once: ~1 min on 2 cores
def test_two_sweep_processes_share_one_study(fast_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    processes = [
        subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for p in processes:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    trials = load(sweep).get_trials()
    ended = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(ended) >= 4  # both stop when 4 have ended or run (a last one may overlap)
    assert {t.user_attrs["pid"] for t in ended} == {p.pid for p in processes}  # both worked
    # One folder per trial, each holding its own trial's job: no clash.
    assert folders(sweep) == [str(t.number) for t in trials]
    for t in trials:
        job = sweep / str(t.number)
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"+callbacks.optuna_trial.trial_number={t.number}" in overrides


def test_a_changed_search_space_is_refused(fast_overrides, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    search = [*fast_overrides, *SEARCH, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]
    run_main("-m", *search, monkeypatch=monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main("-m", *search, "hydra.sweeper.n_trials=2", "model.dropout=interval(0.0,0.3)",
                 monkeypatch=monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: study mlp_optuna") and "model.dropout" in error
    assert "interval(0.0, 0.5)" in error and "interval(0.0, 0.3)" in error
    assert folders(sweep) == ["0"] and len(load(sweep).get_trials()) == 1


def test_a_bad_storage_url_is_one_line_and_a_non_zero_exit(fast_overrides, tmp_path, monkeypatch,
                                                           capsys):  # fmt: skip
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit_info:
        run_main("-m", *fast_overrides, *SEARCH, "hydra.sweeper.storage=nosuchdb://host/x",
                 f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert err.startswith("error: hydra.sweeper.storage=nosuchdb://host/x cannot be opened")
    assert not sweep.exists()  # refused before any work


def test_a_sweep_whose_trials_keep_failing_stops(fast_overrides, tmp_path, monkeypatch, capsys):
    """A broken setting fails every trial in seconds: the sweep stops after
    ``max_consecutive_failures`` of them instead of spending all ``n_trials`` on failures."""
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit_info:
        run_main("-m", *fast_overrides, *SEARCH, "optimizer.lr=-1", "hydra.sweeper.n_trials=10",
                 "hydra.sweeper.max_consecutive_failures=2", f"hydra.sweep.dir={sweep}",
                 monkeypatch=monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: the last 2 trials failed (the last: trial 1: ")
    assert "ConfigError: optimizer: Invalid learning rate: -1" in error
    trials = load(sweep).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
