"""Run folders saved before a class was renamed, merged or retired still open, build and resume
(``src.run_folder.upgrade``)."""

import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src import build
from src.lit.callbacks import CheckpointExtras
from src.run_folder import RunFolder
from src.run_folder.upgrade import upgrade
from tests.conftest import CONF, FAST, ROOT, run_main

#: The callbacks of a run started before 2026-12-01 (what results/ holds).
OLD_CALLBACKS = ROOT / "results" / "mlp_default" / "0" / ".hydra" / "config.yaml"


def targets(node) -> dict[str, str | None]:
    return {k: (v or {}).get("_target_") for k, v in OmegaConf.to_container(node).items()}


def test_the_old_callbacks_become_todays_and_keep_their_settings():
    saved = OmegaConf.load(OLD_CALLBACKS)
    assert "src.lit.callbacks.StopOnSignal" in targets(saved.callbacks).values()  # the premise
    saved.callbacks.progress_bar.refresh_rate = 3  # a setting of the user's
    upgraded = upgrade(saved)
    today = OmegaConf.load(CONF / "callbacks" / "default.yaml")
    assert targets(upgraded.callbacks) == targets(today)
    assert upgraded.callbacks.progress_bar.refresh_rate == 3
    checkpoint = OmegaConf.to_container(upgraded.callbacks.model_checkpoint, resolve=False)
    assert checkpoint["save_last"] and checkpoint["save_top_k"] == 1
    assert checkpoint["monitor"] == "${monitor}"
    assert OmegaConf.to_container(upgraded.callbacks.safe_stop, resolve=False) == {
        "_target_": "src.lit.callbacks.SafeStop",
        "checkpoint_path": "${paths.output_dir}/checkpoints/last.ckpt",
        "check_every": "${trainer.log_every_n_steps}",
    }
    tags = upgraded.callbacks.checkpoint_extras.tags
    assert OmegaConf.to_container(tags, resolve=False) == {"model": "${model._target_}"}
    assert upgraded.trainer.enable_model_summary is False


def test_a_run_without_best_checkpoints_keeps_only_last():
    saved = OmegaConf.load(OLD_CALLBACKS)
    saved.callbacks.model_checkpoint = None  # callbacks.model_checkpoint=null at the time
    checkpoint = upgrade(saved).callbacks.model_checkpoint
    assert checkpoint._target_ == "src.lit.callbacks.RunCheckpoint"
    assert checkpoint.save_top_k == 0 and checkpoint.save_last


def test_a_config_of_today_is_left_as_it_is():
    today = OmegaConf.load(CONF / "callbacks" / "default.yaml")
    cfg = OmegaConf.create({"callbacks": today, "trainer": {"enable_model_summary": True}})
    before = OmegaConf.to_yaml(cfg)
    assert OmegaConf.to_yaml(upgrade(cfg)) == before


@pytest.mark.slow
def test_every_saved_config_in_results_builds():
    saved = sorted((ROOT / "results").glob("*/*/.hydra/config.yaml"))
    renamed = [p for p in saved if OmegaConf.load(p).model._target_ == "src.numpy_nn.MLP"]
    assert renamed and len(saved) > 2 * len(renamed)  # the premise: both kinds are there
    today = set(targets(OmegaConf.load(CONF / "callbacks" / "default.yaml")).values())
    sweeper = {"hydra_plugins.dl_optuna_sweeper.report.ReportToTrial"}
    for path in saved:
        cfg = RunFolder(path.parent.parent).config()  # checks every target
        assert set(targets(cfg.callbacks).values()) <= today | sweeper, path
        # Saved before data.input_shape (some before data.num_classes): CIFAR-10's defaults.
        assert cfg.data.get("input_shape", [3, 32, 32]) == [3, 32, 32], path
        build.build_datamodule(cfg)
        build.build_classifier(cfg)


def test_a_checkpoint_of_before_the_merge_restores_the_random_generators():
    torch.manual_seed(1)
    random.seed(1)
    state = CheckpointExtras().state_dict()
    expected = torch.rand(3), random.random()
    extras = CheckpointExtras()
    extras.on_load_checkpoint(None, None, {"callbacks": {"RngState": state}})
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def as_saved_before_the_merge(run_dir: Path) -> None:
    """Give a run folder the config and checkpoint a run started before 2026-12-01 left."""
    config = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config)
    cfg.callbacks = OmegaConf.load(OLD_CALLBACKS).callbacks
    cfg.trainer.enable_model_summary = True
    OmegaConf.save(cfg, config)
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    states = checkpoint["callbacks"]
    states["RngState"] = states.pop("CheckpointExtras")
    torch.save(checkpoint, last)


@pytest.mark.slow
def test_a_run_started_before_the_merge_resumes_exactly(tmp_path, monkeypatch):
    # Dropout draws from torch's generator: the resumed run matches an uninterrupted one only if
    # the old checkpoint's generators are restored and its old callbacks are read as today's.
    args = [*FAST, "model.dropout=0.5", "test=false", f"paths.data_dir={tmp_path / 'data'}"]
    run_main(*args, f"hydra.run.dir={tmp_path / 'whole'}", monkeypatch=monkeypatch)
    first = tmp_path / "first"
    run_main(*args, "trainer.max_steps=3", f"hydra.run.dir={first}", monkeypatch=monkeypatch)
    as_saved_before_the_merge(first)
    run_main(f"resume={first}", "trainer.max_steps=6", monkeypatch=monkeypatch)

    def weights(run: Path) -> dict[str, torch.Tensor]:
        return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    whole, resumed = weights(tmp_path / "whole"), weights(first)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
