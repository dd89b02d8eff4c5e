"""What the Optuna sweeper refuses before its first trial: a search space that does not fit the
config (issue 19, test 4), a search that differs from its study's record (test 3), and a study
whose stored pruner names code to run (issue 18, test 5). Each refusal is one sentence and exit
status 1, and leaves the study and the sweep folder as they were."""

import contextlib
import pickle
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.conftest import FAST, run_main
from tests.test_optuna_sweeper import SEARCH, folders, load


def refused(*args: str, capsys) -> str:
    """Run the sweep, expecting a refusal: its one line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info, pytest.MonkeyPatch.context() as monkeypatch:
        run_main("-m", *args, monkeypatch=monkeypatch)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.bogus=choice(1,2)",
         "error: model.bogus=choice(1,2): model.bogus is not a key of the config (to add a new "
         "key, write +model.bogus)"),
        ("optimizer=choice(adam,rmsprop)",
         "error: optimizer=choice(adam,rmsprop): rmsprop is not an option of optimizer "
         "(options: adam, numpy_sgd, sgd)"),
        ("optimizer.momentum=interval(0.5,0.9)",  # sgd has a momentum, adam (searched) not
         "error: optimizer.momentum=interval(0.5,0.9): optimizer.momentum is not a key of the "
         "config with optimizer=adam"),
        ("model.dropout=interval(0.5,0.1)",
         "error: model.dropout=interval(0.5,0.1): the interval's low end is above its high end"),
        ("optimizer.lr=tag(log,interval(0,0.1))",
         "error: optimizer.lr=tag(log,interval(0,0.1)): a log-scale interval needs a low end "
         "above 0"),
        ("trainer.max_steps=range(5,5)",
         "error: trainer.max_steps=range(5,5): the range has no values"),
    ],
)  # fmt: skip
def test_a_bad_search_space_is_refused_before_any_trial(
    override, message, fast_overrides, tmp_path, capsys
):
    sweep = tmp_path / "sweep"
    error = refused(*fast_overrides, *SEARCH, override, f"hydra.sweep.dir={sweep}", capsys=capsys)
    assert error.startswith(message)
    assert not sweep.exists()  # no study, no trial, no folder


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 1-trial search and the arguments that made it."""
    root = tmp_path_factory.mktemp("finished")
    args = [*FAST, f"paths.output_root={root / 'outputs'}", f"paths.data_dir={root / 'data'}",
            *SEARCH, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={root / 'sweep'}"]  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main("-m", *args, monkeypatch=monkeypatch)
    return root / "sweep", args


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ("seed=7", "(base config seed: the study has 42, this one 7)"),
        ("trainer.val_check_interval=2",
         "(base config trainer.val_check_interval: the study has 3, this one 2)"),
        ("hydra.sweeper.pruner=none",
         "(pruner: the study has {'_target_': 'optuna.pruners.MedianPruner', 'n_startup_trials': "
         "8, 'n_warmup_steps': 1000}, this one none)"),
        ("hydra.sweeper.direction=minimize",
         "(direction: the study has maximize, this one minimize)"),
    ],
)  # fmt: skip
def test_a_changed_search_is_refused(change, difference, finished_sweep, capsys):
    """Test 3: a changed base config, pruner or direction (the space: test_optuna_sweeper)."""
    sweep, args = finished_sweep
    error = refused(*args, "hydra.sweeper.n_trials=2", change, capsys=capsys)
    assert error.startswith(f"error: study mlp_optuna in journal:{sweep}/optuna_journal.log "
                            f"was made for another search {difference}; ")  # fmt: skip
    assert len(load(sweep).get_trials()) == 1 and folders(sweep) == ["0"]


class WriteMarker:
    """Unpickling this writes a file: the code a crafted pickle runs."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


LOADERS = {
    "torch.load": lambda f: {"_target_": "torch.load", "f": f, "weights_only": False},
    "numpy.load": lambda f: {"_target_": "numpy.load", "file": f, "allow_pickle": True},
    "joblib.load": lambda f: {"_target_": "joblib.load", "filename": f},
}


@pytest.mark.slow
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_study_whose_pruner_names_a_loader_is_refused(loader, finished_sweep, tmp_path, capsys):
    """Issue 18, test 5: the pruner spec stored in a shared study names a loader of a crafted
    pickle. The next sweep refuses the study, and the pickle's code never runs."""
    sweep, args = finished_sweep
    shared = tmp_path / "shared"
    shutil.copytree(sweep, shared)
    marker, control = tmp_path / "marker", tmp_path / "control"
    for name, path in (("crafted.pkl", marker), ("control.pkl", control)):
        (tmp_path / name).write_bytes(pickle.dumps(WriteMarker(path)))
    # The crafted spec does run code when built (so a study must never be built from).
    with contextlib.suppress(Exception):
        instantiate(LOADERS[loader](str(tmp_path / "control.pkl")))
    assert control.exists()
    study = load(shared)
    study.set_user_attr("pruner_spec", LOADERS[loader](str(tmp_path / "crafted.pkl")))

    error = refused(*args, f"hydra.sweep.dir={shared}", "hydra.sweeper.n_trials=2", capsys=capsys)
    assert "the stored pruner_spec" in error and f"names _target_ {loader}," in error
    assert not marker.exists()
    assert len(load(shared).get_trials()) == 1 and folders(shared) == ["0"]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["default", "sqlite"])
def test_a_new_study_in_a_folder_with_another_sweeps_jobs_is_refused(
    storage, fast_overrides, tmp_path, capsys
):
    """A sweep folder that holds a plain multirun's jobs (no study) is not reused, whether the
    study would be kept in it (the default journal) or in a database."""
    sweep = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main("-m", *fast_overrides, "optimizer.lr=1e-3", f"hydra.sweep.dir={sweep}",
                 monkeypatch=monkeypatch)  # fmt: skip
    before = sorted(p.name for p in sweep.iterdir())
    url = [] if storage == "default" else [f"hydra.sweeper.storage=sqlite:///{tmp_path}/s.db"]
    error = refused(*fast_overrides, *SEARCH, *url, f"hydra.sweep.dir={sweep}", capsys=capsys)
    assert error == (f"error: hydra.sweep.dir={sweep} holds the jobs of another sweep, and study "
                     "mlp_optuna is not in it: use another hydra.sweep.dir")  # fmt: skip
    assert sorted(p.name for p in sweep.iterdir()) == before  # no journal left behind


def test_a_stored_spec_may_name_only_optuna_pruners_samplers_and_allowed_modules():
    from hydra_plugins.dl_optuna_sweeper.errors import SweepError
    from hydra_plugins.dl_optuna_sweeper.study import check_targets

    check_targets({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 8}, "p")
    check_targets({"_target_": "my_lab.pruners.Mine"}, "p", allowed=("my_lab",))
    for bad in ({"_target_": "os.system"},
                {"_target_": "optuna.pruners.PatientPruner",
                 "wrapped_pruner": {"_target_": "builtins.eval"}},
                {"_target_": "optuna.pruners._private"},
                {"_target_": "optuna.prunersX.Thing"}):  # fmt: skip
        with pytest.raises(SweepError, match="which a study may not name"):
            check_targets(bad, "p")


@pytest.mark.slow
def test_pruning_without_the_trial_reporter_is_refused(fast_overrides, tmp_path, capsys):
    """Without the reporter no trial reports, so the pruner would silently never prune."""
    from hydra_plugins.dl_optuna_sweeper.report import ReportToTrial
    from hydra_plugins.dl_optuna_sweeper.search import REPORTER

    assert f"{ReportToTrial.__module__}.{ReportToTrial.__qualname__}" == REPORTER
    sweep = tmp_path / "sweep"
    args = [*fast_overrides, *SEARCH, "~callbacks.optuna_trial", f"hydra.sweep.dir={sweep}"]
    error = refused(*args, capsys=capsys)
    assert error.startswith(
        "error: hydra.sweeper.pruner prunes on the trials' reports, but the job's callbacks have "
        "no reporter: add callbacks.optuna_trial: "
    )
    assert not sweep.exists()
