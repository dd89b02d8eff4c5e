"""Each named experiment (conf/experiment/*.yaml) composes, says what it is, trains a few steps."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.train import train
from tests.conftest import CONF, compose_cfg, run_main

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# Extra overrides that keep the slow models to a couple of small steps on fake data.
SMALL_CONVNET = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.num_train=128",
                 "data.val_size=0", "data.num_test=32", "data.batch_size=16"]  # fmt: skip
SMALL = {"convnet_assignment": SMALL_CONVNET, "convnet_augment": SMALL_CONVNET}

# What each recipe must keep: the assignment's protocol and the tuned settings the report states.
RECIPES = {
    "mlp_assignment": {"model._target_": "src.models.MLP", "data.val_size": 0,
                       "model.hidden_units": [100], "optimizer._target_": "torch.optim.SGD",
                       "optimizer.lr": 2e-3, "trainer.max_steps": 1500,
                       "trainer.val_check_interval": 100},
    "mlp_numpy_assignment": {"model._target_": "src.numpy_nn.NumpyMLP", "data.val_size": 0,
                             "model.hidden_units": [100],
                             "optimizer.lr": 2e-3, "trainer.max_steps": 1500},
    "convnet_assignment": {"model._target_": "src.models.ConvNet", "data.val_size": 0,
                           "optimizer._target_": "torch.optim.Adam", "optimizer.lr": 1e-4,
                           "data.batch_size": 32, "trainer.max_steps": 5000,
                           "trainer.val_check_interval": 500},
    "convnet_augment": {"model._target_": "src.models.ConvNet", "data.augment": True},
    "mlp_deep": {"model.hidden_units": [512, 512, 256], "model.neg_slope": 0.0,
                 "optimizer.lr": 1e-4, "trainer.max_steps": 5000, "data.val_size": 5000},
    "mlp_tuned": {"model._target_": "src.models.MLP", "data.val_size": 5000,
                  "model.hidden_units": [1024, 512, 256], "model.norm": "torch",
                  "optimizer._target_": "torch.optim.Adam", "data.normalize": "standardize",
                  "trainer.max_steps": 4000},
    "mlp_batchnorm": {"model.norm": "manual", "data.val_size": 5000},
}  # fmt: skip


def test_the_issue_names_are_all_there():
    assert set(RECIPES) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_is_a_documented_global_recipe(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    comment = [line for line in text.splitlines()[1:] if line.startswith("#")]
    assert len(comment) >= 3, "say what the recipe is and why"
    assert f"experiment={name}" in text, "show the command that runs it"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_to_its_recipe(name):
    cfg = compose_cfg(f"experiment={name}")  # the real data config, nothing is loaded
    for key, expected in RECIPES.get(name, {}).items():
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == expected, key
    assert cfg.data._target_ == "src.data.CIFAR10DataModule"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_a_few_steps_on_fake_data(name, fast_overrides, tmp_path):
    run = tmp_path / "run"
    cfg = compose_cfg(*fast_overrides, f"experiment={name}", *SMALL.get(name, []), output_dir=run)
    protocol = cfg.data.val_size == 0  # the assignment's: no validation split, last ckpt tested
    metrics = train(cfg)
    assert 0 <= metrics["final_test/acc"] <= 1
    assert ("best_val/acc" in metrics) != protocol
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_experiment_runs_from_the_command_line(fast_overrides, tmp_path, monkeypatch):
    """`experiment=NAME` through the real entry point, with command-line overrides on top."""
    run_main(*fast_overrides, "experiment=mlp_deep", "model.hidden_units=[32,16]",
             monkeypatch=monkeypatch)  # fmt: skip
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1
    config = OmegaConf.load(runs[0] / ".hydra" / "config.yaml")
    assert config.model.hidden_units == [32, 16] and config.optimizer.lr == 1e-4
    assert "experiment=mlp_deep" in OmegaConf.load(Path(runs[0]) / ".hydra" / "overrides.yaml")
