"""Data parallelism (``trainer=ddp``) on two CPU processes against one process.

The global batch is ``data.batch_size`` however many processes train: each process must train on
its own half of every global batch and evaluate its own half of each evaluation split, and the
result must be the one process's. Batch norm statistics are per process unless
``trainer.sync_batchnorm=true`` (the default of conf/trainer/ddp.yaml is false), which PyTorch's
``SyncBatchNorm`` supports on GPUs only.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.train import train
from tests.conftest import compose_cfg, run_cli

RUN = ["trainer.max_steps=8", "trainer.val_check_interval=4", "data.batch_size=50"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def probe(out: Path) -> list[str]:
    return ["+callbacks.probe._target_=tests.probes.RecordBatches", f"+callbacks.probe.out={out}"]


def seen(out: Path, rank: int = 0) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def samples(batch: list[list[float]]) -> Counter:
    return Counter(map(tuple, batch))


def run_ddp(args: list[str], run_dir: Path, cwd: Path) -> dict[str, float]:
    """Train with two processes from the command line; the final metrics its run.yaml records."""
    done = run_cli(*args, *DDP, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    record = OmegaConf.to_container(OmegaConf.load(run_dir / "run.yaml"))
    assert record["status"] == "completed"
    return record["metrics"]


def running_means(run_dir: Path) -> dict[str, torch.Tensor]:
    """The batch norm layers' running means in a run's last checkpoint."""
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # our own file
    return {k: v for k, v in state["state_dict"].items() if k.endswith("running_mean")}


def assert_same_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key


@pytest.mark.slow
def test_two_processes_split_every_batch_and_match_one_process(fast_overrides, tmp_path):
    args = [*fast_overrides, *RUN]
    single = train(compose_cfg(*args, *probe(tmp_path / "one"), output_dir=tmp_path / "single"))
    ddp = run_ddp([*args, *probe(tmp_path / "two")], tmp_path / "ddp", cwd=tmp_path)
    assert_same_metrics(ddp, single)

    one, ranks = seen(tmp_path / "one"), [seen(tmp_path / "two", r) for r in (0, 1)]
    # Training: each process takes half of each global batch, and the halves make up the batch
    # that one process trains on (not each process the whole batch, averaged to the same result).
    assert sorted(one["train"]) == [str(step) for step in range(8)]
    for step, batch in one["train"].items():
        halves = [r["train"][step] for r in ranks]
        assert [len(h) for h in halves] == [25, 25]
        assert samples(halves[0]) + samples(halves[1]) == samples(batch)
    # Evaluation: each process evaluates its own share of every split, together the whole split
    # (not each process the whole split, whose synchronised metrics would come out the same).
    # Each global evaluation batch is halved, so a short last batch leaves the shares unequal.
    for split in ("val", "test", "final_test"):
        assert one[split], split
        shares = [samples(r[split]) for r in ranks]
        assert shares[0] + shares[1] == samples(one[split]), split  # each sample once
        assert all(share.total() < len(one[split]) for share in shares), split


def test_batch_norm_statistics_are_per_process_by_default(fast_overrides, tmp_path):
    args = [*fast_overrides, "trainer.max_steps=4", "trainer.val_check_interval=4",
            "data.batch_size=50", "model.norm=torch"]  # fmt: skip
    train(compose_cfg(*args, output_dir=tmp_path / "single"))
    run_ddp(args, tmp_path / "apart", cwd=tmp_path)
    # The running mean averages the batch means the layer normalised with: over 50 images in one
    # process, over its own 25 in each of two (rank 0's are saved).
    one, two = (running_means(tmp_path / run) for run in ("single", "apart"))
    assert one.keys() == two.keys() and len(one) == 1
    for name, mean in one.items():
        assert mean.abs().max() > 0.01  # the layer has seen batches
        assert not torch.allclose(two[name], mean, rtol=0.05, atol=0), name


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs two or more GPUs")
def test_synchronised_batch_norm_matches_one_process(fast_overrides, tmp_path):
    args = [*fast_overrides, "trainer.max_steps=4", "trainer.val_check_interval=4",
            "data.batch_size=50", "model.norm=torch", "trainer.accelerator=gpu"]  # fmt: skip
    single = train(compose_cfg(*args, "trainer.devices=1", output_dir=tmp_path / "single"))
    done = run_cli(*args, "trainer=ddp", "trainer.devices=2", "trainer.sync_batchnorm=true",
                   f"hydra.run.dir={tmp_path / 'synced'}", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    synced = OmegaConf.to_container(OmegaConf.load(tmp_path / "synced" / "run.yaml"))["metrics"]
    assert_same_metrics(synced, single)  # statistics over the global batch, as in one process
    one, two = (running_means(tmp_path / run) for run in ("single", "synced"))
    for name, mean in one.items():
        torch.testing.assert_close(two[name], mean, rtol=1e-4, atol=1e-5)
