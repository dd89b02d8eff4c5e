"""The project's Optuna sweeper (hydra_plugins/dl_optuna_sweeper): a study that persists in the
sweep folder, resumes after a crash, prunes through its storage, and is shared by processes."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import yaml
from optuna.trial import TrialState

from hydra_plugins.dl_optuna_sweeper import results as sweep_results
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
        if reporter.address.number == self.trial and trainer.global_step == self.step:
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


@pytest.mark.slow
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
    # Paths relative to the sweep folder (portable); the plugin's reader resolves them.
    assert results["storage"] == "journal:optuna_journal.log"
    assert results["best_job_dir"] == str(study.best_trial.number)
    assert sweep_results.read(sweep)["best_job_dir"] == str(sweep / str(study.best_trial.number))


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


@pytest.mark.slow
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


def start_together(*commands: list[str], cwd: Path) -> list[subprocess.Popen]:
    """Start ``python -m src.train COMMAND`` for each command at the same instant."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return [
        subprocess.Popen([sys.executable, "-m", "src.train", *command], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]  # fmt: skip


def job_number(job: Path) -> int:
    """Hydra's number of a job, as its ``.hydra/hydra.yaml`` recorded it."""
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"]


@pytest.mark.slow  # two sweep processes at once: ~1 min on 2 cores
def test_two_processes_started_together_draw_distinct_trials_within_the_bound(
    fast_overrides, tmp_path
):
    """Issue 19, test 1: both processes see an empty study when they ask their first trial."""
    sweep = tmp_path / "sweep"
    args = ["-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"]
    processes = start_together(args, args, cwd=tmp_path)
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    trials = load(sweep).get_trials()
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params)  # each trial seeded by its own number
    # n_trials is exceeded by at most one batch (n_jobs=1) per other process.
    assert 4 <= len(trials) <= 4 + 1
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["pid"] for t in trials} == {p.pid for p in processes}  # both worked
    numbers = [t.number for t in trials]
    assert sorted(set(numbers)) == numbers == list(range(len(trials)))
    assert folders(sweep) == [str(n) for n in numbers]  # one folder per trial, none shared
    assert [job_number(sweep / str(n)) for n in numbers] == numbers  # Hydra's job = the trial


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_sweep_whose_every_trial_fails_exits_1(fast_overrides, tmp_path, monkeypatch, capsys):
    """Issue 19, test 5: fewer failures than max_consecutive_failures, but none completed."""
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit_info:
        run_main("-m", *fast_overrides, *SEARCH, "optimizer.lr=-1", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.max_consecutive_failures=5", f"hydra.sweep.dir={sweep}",
                 monkeypatch=monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: none of the 2 trials of this sweep process completed")
    assert "(2 of 2): ConfigError: optimizer: Invalid learning rate: -1" in error
    assert [t.state for t in load(sweep).get_trials()] == [TrialState.FAIL] * 2


@pytest.mark.slow
def test_an_epoch_limited_trial_is_pruned(fast_overrides, tmp_path, monkeypatch):
    """Issue 19, test 7: the run's length set by max_epochs (max_steps=-1), 4 steps an epoch."""
    sweep = tmp_path / "sweep"
    fixed = ["model.hidden_units=[32]", "model.neg_slope=0.0", "model.dropout=0.0",
             "model.norm=none", "optimizer=adam", "optimizer.weight_decay=0.0",
             "data.normalize=mean_image"]  # fmt: skip
    run_main("-m", *fast_overrides, *SEARCH, *fixed, "trainer.max_steps=-1",
             "trainer.max_epochs=3", "optimizer.lr=choice(1e-2,1e-9)", "hydra.sweeper.n_trials=2",
             "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
             "~hydra.sweeper.sampler.n_startup_trials", "hydra.sweeper.pruner=null",
             "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.3}",
             f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch)  # fmt: skip
    trials = {t.params["optimizer.lr"]: t for t in load(sweep).get_trials()}
    assert trials[1e-9].state == TrialState.PRUNED
    assert list(trials[1e-9].intermediate_values) == [3]  # its first validation of 12 steps
    record = yaml.safe_load((sweep / str(trials[1e-9].number) / "run.yaml").read_text())
    assert record["status"] == "pruned" and record["pruned_at_step"] == 3
    # The other trains its 3 epochs (12 steps) and completes.
    assert trials[1e-2].state == TrialState.COMPLETE
    assert max(trials[1e-2].intermediate_values) == 12


@pytest.mark.slow  # a sweep process of 5 trials: ~20 s on 2 shared cores
def test_the_console_of_a_five_trial_sweep_tells_its_story(fast_overrides, tmp_path):
    """Issue 19, test 6, on the console of a real sweep process."""
    sweep = tmp_path / "sweep"
    done = run_cli("-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=5",
                   "trainer.enable_model_summary=true", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for n in range(5):
        starts = [line for line in lines if f"] trial {n} ({n + 1}/5): model." in line]
        ends = [line for line in lines if f"] trial {n} completed, val/acc 0." in line]
        assert len(starts) == len(ends) == 1, console[-3000:]
        assert "| best so far 0." in ends[0] and "(trial " in ends[0]
    # It ends with the best trials and the results file.
    assert lines[-1].endswith(f"results: {sweep / 'optimization_results.yaml'}")
    assert lines[-8].startswith("study mlp_optuna: 5 trials (5 complete); the best 5:")
    assert lines[-7].split()[:3] == ["trial", "val/acc", "model.hidden_units"]
    # No internal override, no override line at all, Lightning's notices once.
    assert "+callbacks.optuna_trial" not in console and "overrides:" not in console
    assert "#0 : " not in console and "trial_number" not in console
    assert console.count("GPU available:") == 1
    assert console.count("Total params") == 1


@pytest.mark.slow
def test_a_copied_sweep_summarizes_from_its_new_place(fast_overrides, tmp_path, monkeypatch):
    """Issue 18, test 4: a finished 3-trial sweep, moved to another place."""
    sweep = tmp_path / "sweep"
    run_main("-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=3",
             f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch)  # fmt: skip
    best = load(sweep).best_trial.number
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(sweep, moved)
    shutil.rmtree(sweep)  # nothing may still lead to the old place

    assert summarize.main([str(moved)]) == 0
    table, _ = summarize.summarize(moved)
    assert table.job.iloc[0] == str(best)
    written = yaml.safe_load((moved / "optimization_results.yaml").read_text())
    assert written["storage"] == "journal:optuna_journal.log"
    assert written["best_job_dir"] == str(best)
    results = sweep_results.read(moved)
    assert results["best_trial"] == best and results["best_job_dir"] == str(moved / str(best))
    assert (moved / "study_optimization_history.png").stat().st_size > 0  # the study was read


def test_the_committed_search_reads_from_any_clone(tmp_path):
    """results/mlp_search names its journal and best job relative to itself."""
    committed = ROOT / "results" / "mlp_search"
    text = (committed / "optimization_results.yaml").read_text()
    assert "/work/" not in text and "/home/" not in text
    copy = tmp_path / "mlp_search"
    copy.mkdir()
    for name in ("optimization_results.yaml", "optuna_journal.log"):
        shutil.copy(committed / name, copy / name)
    results = sweep_results.read(copy)
    study = sweep_results.load_study(copy)
    assert study.best_trial.number == results["best_trial"] == 34
    assert results["best_job_dir"] == str(copy / "34")
    assert len(study.get_trials()) == results["n_trials"] == 40
