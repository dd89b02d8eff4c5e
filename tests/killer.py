"""Test-only callbacks that break a run on purpose, added with Hydra overrides such as
``+callbacks.killer._target_=tests.killer.KillAtStep +callbacks.killer.step=N``."""

import os
import signal

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Send ``signum`` to this process after step ``step`` of a fresh start, as a crash, the OOM
    killer or a cluster's pre-emption would. A resumed run (started from a checkpoint) is spared.

    ``group=True`` sends it to the whole process group instead: this run and whatever launched
    it (``src.reproduce`` and its other runs), as ``kill -9 -PGID`` would. Start the launcher in a
    group of its own (``start_new_session=True``), or the signal reaches the test runner too."""

    def __init__(self, step: int, signum: int = signal.SIGKILL, group: bool = False):
        self.step, self.signum, self.group = step, signum, group

    def on_train_batch_end(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            if self.group:
                os.killpg(0, self.signum)
            os.kill(os.getpid(), self.signum)


class PoisonAtStep(pl.Callback):
    """Turn the model's weights into NaN after a chosen step, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if trainer.global_step == self.step:
            for p in pl_module.parameters():
                p.data.fill_(float("nan"))


class FailWritesAfterStep(pl.Callback):
    """From step ``step`` of a fresh start on, every checkpoint write fails as it would on a full
    disk (torch's ``RuntimeError``) or a folder turned read-only (``OSError``, EROFS)."""

    def __init__(self, step: int, kind: str = "read_only"):
        self.step, self.kind = step, kind

    def on_train_batch_end(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step != self.step or trainer.ckpt_path is not None:
            return
        import errno

        import torch

        def fail(*args, **kwargs):
            if self.kind == "full":
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")
            raise OSError(errno.EROFS, "Read-only file system")

        torch.save = fail
