"""Sweeps run to the end: multirun, Optuna search, joblib and submitit launchers; the DDP config."""

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tbparse import SummaryReader

from hydra_plugins.dl_optuna_sweeper import results as sweep_results
from tests.conftest import ROOT, compose_cfg, run_main
from tests.test_train import CURVES, only, scalars


class RecordThreads(pl.Callback):
    """Writes the job's torch thread count into its run folder: shows how a launcher pinned it."""

    def __init__(self, path: str):
        self.path = path

    def on_fit_start(self, trainer, pl_module) -> None:
        Path(self.path).write_text(str(torch.get_num_threads()))


def sweep_jobs(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The one sweep folder under tmp_path/outputs/sweeps and its job folders, in job order."""
    sweep = only((tmp_path / "outputs" / "sweeps").iterdir())
    jobs = [p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sweep, sorted(jobs, key=lambda p: int(p.name))


def hparam(job: Path, tag: str):
    return SummaryReader(str(job)).hparams.set_index("tag").value[tag]


@pytest.fixture
def importable(monkeypatch):
    """Worker processes (joblib, submitit) import src.train and tests from the project root."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


@pytest.mark.slow
def test_multirun_over_optimizers_with_a_norm_and_layer_sizes(
    fast_overrides, tmp_path, monkeypatch
):
    """Config groups sweep like any value; each job reports its settings to the HParams tab."""
    run_main("-m", *fast_overrides, "optimizer=sgd,adam", "model.hidden_units=[32,16]",
             "model.norm=torch", monkeypatch=monkeypatch)  # fmt: skip
    sweep, jobs = sweep_jobs(tmp_path)
    assert len(jobs) == 2 and (sweep / "multirun.yaml").exists()
    assert [hparam(j, "optimizer") for j in jobs] == ["sgd", "adam"]
    assert all(hparam(j, "model/hidden_units") == "[32, 16]" for j in jobs)
    assert all(hparam(j, "model/norm") == "torch" for j in jobs)
    assert all(scalars(j).keys() >= CURVES | {"final_test/acc"} for j in jobs)


@pytest.mark.slow
def test_optuna_search_runs_two_trials_side_by_side_and_names_the_best(
    fast_overrides, tmp_path, monkeypatch, importable
):
    """Two trials at once in joblib worker processes, each reporting to the study by itself."""
    run_main("-m", *fast_overrides, "hparams_search=mlp_optuna", "hydra.sweeper.n_trials=2",
             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
             "trainer.max_steps=6", "trainer.val_check_interval=3",
             monkeypatch=monkeypatch)  # fmt: skip
    sweep, jobs = sweep_jobs(tmp_path)
    assert sweep.name.endswith("_mlp_optuna") and [j.name for j in jobs] == ["0", "1"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    space = OmegaConf.load(ROOT / "conf" / "hparams_search" / "mlp_optuna.yaml").hydra.sweeper
    assert set(results["best_params"]) == set(space.params)
    # The workers' reports reached the study: every validation of both trials.
    trials = sweep_results.load_study(sweep).get_trials()  # the journal named by the results
    assert {t.user_attrs["pid"] for t in trials} == {os.getpid()}  # asked by this sweep
    assert [sorted(t.intermediate_values) for t in trials] == [[3, 6], [3, 6]]

    # The objective is each trial's best validation accuracy; the best trial is the one reported.
    best_val = [max(scalars(j)["val/acc"].values()) for j in jobs]
    assert results["best_value"] == pytest.approx(max(best_val))
    best = jobs[best_val.index(max(best_val))]
    overrides = OmegaConf.load(best / ".hydra" / "overrides.yaml")
    for key, value in results["best_params"].items():
        assert f"{key}={value}" in overrides
    config = OmegaConf.load(best / ".hydra" / "config.yaml")  # the string choice became a list
    assert OmegaConf.is_list(config.model.hidden_units)


@pytest.mark.slow
def test_joblib_runs_jobs_side_by_side_each_on_a_share_of_the_cores(
    fast_overrides, tmp_path, monkeypatch, importable
):
    # joblib's process backend (loky) limits each worker's threads to cores // n_jobs.
    record = {"+callbacks.threads._target_": "tests.test_sweeps.RecordThreads",
              "+callbacks.threads.path": "${paths.output_dir}/threads.txt"}  # fmt: skip
    run_main("-m", *fast_overrides, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
             "optimizer.lr=1e-3,1e-4", *(f"{k}={v}" for k, v in record.items()),
             monkeypatch=monkeypatch)  # fmt: skip
    _, jobs = sweep_jobs(tmp_path)
    assert [hparam(j, "optimizer/lr") for j in jobs] == [1e-3, 1e-4]
    assert all("final_test/acc" in scalars(j) for j in jobs)
    share = max((os.cpu_count() or 1) // 2, 1)
    assert [int((j / "threads.txt").read_text()) for j in jobs] == [share, share]


@pytest.mark.slow  # two job processes import torch, polled by submitit: 30-60 s on 2 cores
def test_submitit_local_launcher_runs_a_sweep(fast_overrides, tmp_path, monkeypatch, importable):
    """The submitit launcher as on SLURM, with its local executor: each job a subprocess."""
    run_main("-m", *fast_overrides, "hydra/launcher=submitit_local",
             "hydra.launcher.timeout_min=5", "optimizer.lr=1e-3,1e-4",
             monkeypatch=monkeypatch)  # fmt: skip
    sweep, jobs = sweep_jobs(tmp_path)
    assert [hparam(j, "optimizer/lr") for j in jobs] == [1e-3, 1e-4]
    assert all("final_test/acc" in scalars(j) for j in jobs)
    assert (sweep / ".submitit").is_dir()  # submitit's own logs and pickles


def test_slurm_preset_builds_on_the_submitit_plugin():
    launcher = compose_cfg("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.timeout_min > 0 and launcher.array_parallelism > 0


def test_ddp_trainer_config_makes_a_ddp_trainer(tmp_path):
    cfg = compose_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                      output_dir=tmp_path / "run")  # fmt: skip
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])  # starts no processes yet
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert trainer.num_devices == 2 and trainer.strategy.root_device.type == "cpu"
