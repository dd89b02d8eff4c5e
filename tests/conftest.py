"""Shared test helpers: compose the real config tree and run the real entry point, on fake data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from src.config import compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small and quick: fake data, a few steps. Tests add their own overrides after.
FAST = [
    "data=fake",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
]


def compose_cfg(*overrides: str, output_dir: Path | None = None) -> DictConfig:
    """``src.config.compose`` of ``overrides``: the config ``python -m src.train`` would run.

    With ``output_dir`` the run writes there, and the config can go straight to ``src.train.train``.
    """
    return compose(overrides, output_dir)


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
