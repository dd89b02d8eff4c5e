"""Shared test helpers: compose the real config tree and run the real entry point, on fake data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import src.runs  # noqa: F401  (registers the config resolver that conf/hydra uses)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and quick: fake data, a few steps, no model summary. Tests add their own overrides after.
FAST = [
    "data=fake",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


def compose_cfg(*overrides: str, output_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` as ``python -m src.train`` would, with Hydra's runtime filled in.

    With ``output_dir`` the run writes there, and the config can go straight to ``src.train.train``.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.paths.output_root = str(output_dir.parent)
        HydraConfig().set_config(cfg)
    return cfg


def run_main(*args: str, monkeypatch: pytest.MonkeyPatch):
    """Run ``src.train.main`` in this process as if called with ``args``; return what it returns.

    Much faster than a subprocess (no fresh imports). Bad input surfaces as ``SystemExit``.
    """
    from src.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["src.train", *args])
    try:
        return main()
    finally:
        GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m src.train ARGS`` in a subprocess from ``cwd``; return the process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "src.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fast_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a few-step run on fake data whose outputs all land under ``tmp_path``."""
    return [
        *FAST,
        f"paths.output_root={tmp_path / 'outputs'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
