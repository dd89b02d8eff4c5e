"""Test-only callbacks that watch a run without changing it, added with Hydra overrides such as
``+callbacks.probe._target_=tests.probes.RecordBatches +callbacks.probe.out=DIR``."""

import json
from pathlib import Path

import pytorch_lightning as pl
from torch import Tensor


def fingerprints(batch: tuple[Tensor, Tensor]) -> list[list[float]]:
    """One short list per sample (its label and first pixels): which samples a batch holds."""
    x, y = batch
    head = x.flatten(1)[:, :4].double().cpu()
    return [
        [int(label), *(round(v, 3) for v in row)]
        for label, row in zip(y.tolist(), head.tolist(), strict=True)
    ]


class RecordBatches(pl.Callback):
    """Write the samples of every batch this process saw to ``out/rank{global_rank}.json``:
    ``{"train": {step: [...]}, "val": [...], "test": [...], "final_test": [...]}``, evaluation
    samples pooled over the run. Under DDP each process writes its own file."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.seen: dict = {"train": {}, "val": [], "test": [], "final_test": []}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        self.seen["train"][trainer.global_step] = fingerprints(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        split = trainer.datamodule.eval_splits[dataloader_idx]
        self.seen[split] += fingerprints(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["final_test"] += fingerprints(batch)

    def teardown(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
