"""The Optuna sweeper when processes share a study: seeds per trial, trials whose process died,
and the record of the search that the creating process writes (issue 19, tests 1-3)."""

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.dl_optuna_sweeper.sampling import make_sampler
from tests.conftest import run_main
from tests.test_optuna_sweeper import SEARCH, folders, job_number, load, start_together

TPE = {"_target_": "optuna.samplers.TPESampler", "seed": 42, "n_startup_trials": 2}
SPACE = {
    "x": optuna.distributions.FloatDistribution(0.0, 1.0),
    "k": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
}


def ask_and_tell(study: optuna.Study) -> dict:
    trial = study.ask(fixed_distributions=SPACE)
    study.tell(trial, trial.params["x"])
    return trial.params


def test_a_seeded_sampler_draws_by_trial_number_not_by_process():
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(storage=storage, study_name="s", sampler=make_sampler(TPE))
    second = optuna.load_study(storage=storage, study_name="s", sampler=make_sampler(TPE))
    # Two processes that take turns asking: every trial has its own seed, so no two alike, past
    # the random start (2 trials) as well.
    drawn = [ask_and_tell(study) for study in (first, second) * 3]
    assert len({tuple(sorted(p.items())) for p in drawn}) == 6
    # One process with the same seed draws the same trials again, in order.
    alone = optuna.create_study(sampler=make_sampler(TPE))
    assert [ask_and_tell(alone) for _ in range(6)] == drawn


@pytest.mark.slow
def test_a_trial_left_running_without_an_owner_is_replaced(fast_overrides, tmp_path, monkeypatch):
    """Test 2: a process killed between asking a trial and writing its owner leaves it RUNNING
    with no owner; after the grace period (stale_after_s) it is failed and replaced."""
    sweep = tmp_path / "sweep"
    search = [*fast_overrides, *SEARCH, f"hydra.sweep.dir={sweep}", "hydra.sweeper.stale_after_s=1"]
    run_main("-m", *search, "hydra.sweeper.n_trials=1", monkeypatch=monkeypatch)
    ownerless = load(sweep).ask()  # as the killed process left it
    assert ownerless.number == 1 and ownerless.user_attrs == {}
    time.sleep(1.2)

    run_main("-m", *search, "hydra.sweeper.n_trials=2", monkeypatch=monkeypatch)
    trials = load(sweep).get_trials()
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["failed_because"] == "its sweep process died"
    assert [t.number for t in trials if t.state == TrialState.COMPLETE] == [0, 2]  # n_trials
    assert folders(sweep) == ["0", "2"]
    assert job_number(sweep / "2") == 2  # Hydra's job number is the trial number


@pytest.mark.slow
def test_a_process_that_joins_a_study_being_created_waits_for_its_record(
    fast_overrides, tmp_path, monkeypatch, capsys
):
    """Test 3, two creators with different spaces, step by step: the creator has made the study
    but not yet written its record when the second process joins. The second waits, and is
    refused because the creator's space is not its own; it never records its own."""
    sweep = tmp_path / "sweep"
    search = [*fast_overrides, *SEARCH, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]
    run_main("-m", *search, monkeypatch=monkeypatch)  # a whole record to give the creator
    record = load(sweep).user_attrs
    record["search_space"]["model.dropout"] = optuna.distributions.distribution_to_json(
        optuna.distributions.FloatDistribution(0.0, 0.3)
    )
    other = tmp_path / "other"
    other.mkdir()
    backend = optuna.storages.journal.JournalFileBackend(str(other / "optuna_journal.log"))
    creator = optuna.create_study(storage=optuna.storages.JournalStorage(backend),
                                  study_name="mlp_optuna", direction="maximize")  # fmt: skip

    joined = threading.Event()
    load_study = optuna.load_study

    def load_and_say(*args, **kwargs) -> optuna.Study:
        study = load_study(*args, **kwargs)
        joined.set()
        return study

    monkeypatch.setattr(optuna, "load_study", load_and_say)

    def write_record() -> None:  # the creator, a moment after the other process joined
        joined.wait(timeout=60)
        time.sleep(0.5)
        for kind, value in record.items():
            creator.set_user_attr(kind, value)

    writer = threading.Thread(target=write_record)
    writer.start()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main("-m", *search, f"hydra.sweep.dir={other}", monkeypatch=monkeypatch)
    writer.join()
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: study mlp_optuna in journal:") and "\n" not in error
    assert "(search space model.dropout: the study has interval(0.0, 0.3), this one " in error
    assert creator.user_attrs["search_space"] == record["search_space"]  # the creator's space
    assert creator.get_trials() == [] and folders(other) == []


@pytest.mark.slow  # two sweep processes at once: ~40 s on 2 cores
def test_two_processes_that_create_a_study_with_different_spaces_at_once(fast_overrides, tmp_path):
    """Test 3, the race itself: exactly one creates the study with its space; the other is
    refused in one sentence and runs no trial."""
    sweep = tmp_path / "sweep"
    args = ["-m", *fast_overrides, *SEARCH, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]
    narrow = [*args, "model.dropout=interval(0.0,0.3)"]
    processes = start_together(args, narrow, cwd=tmp_path)
    outputs = [p.communicate(timeout=300) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 1], [err[-1500:] for _, err in outputs]
    refused, (_, error) = next((p, o) for p, o in zip(processes, outputs, strict=True)
                               if p.returncode == 1)  # fmt: skip
    assert error.strip().splitlines()[-1].startswith("error: study mlp_optuna in journal:")
    assert "search space model.dropout: the study has interval" in error
    study = load(sweep)
    kept = processes[1] if refused is processes[0] else processes[0]
    low_high = (0.0, 0.3) if kept is processes[1] else (0.0, 0.5)
    dropout = optuna.distributions.json_to_distribution(
        study.user_attrs["search_space"]["model.dropout"]
    )
    assert (dropout.low, dropout.high) == low_high  # the space of the process that ran
    assert {t.user_attrs["pid"] for t in study.get_trials()} == {kept.pid}
