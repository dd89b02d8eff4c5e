"""Lightning callbacks of this project."""

import os
import random
import signal
import sys
import threading
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src.lit import compat


class StepProgressBar(TQDMProgressBar):
    """One training bar over all ``max_steps``: runs here count steps, and epochs are incidental.

    Lightning's own bar restarts every epoch and shows an epoch count that never ends (``max_epochs
    = -1``); this one shows ``step/max_steps``, the time left, and the latest metrics. It is the
    only bar: validation and the final test draw none.
    """

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        # Made here with its total and description, not reset after (each redraw of Lightning's
        # own "Training: 0/?" bar would stay in a log file).
        self.train_progress_bar = Tqdm(
            desc="train",
            total=trainer.max_steps,
            initial=trainer.global_step,  # a resumed run continues its bar
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # no reset at epoch boundaries

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        # The classifier writes its training metrics to the loggers itself (Classifier._log_train),
        # so Lightning's progress-bar metrics hold only what self.log gave (validation).
        train = getattr(pl_module, "train_metrics", {})
        return {**train, **super().get_metrics(trainer, pl_module)}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any):
        bar, step = self.train_progress_bar, trainer.global_step
        if self.is_enabled and (step % self.refresh_rate == 0 or step == bar.total):
            compat.set_progress(bar, step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    # One bar per run: no bar of its own for each validation and for the final test. Their
    # redraws end up as fragments ("Testing: 0/?") in log files, and the training bar shows the
    # validation metrics once a validation is done.
    def on_validation_start(self, *_: Any) -> None:
        pass

    def on_validation_batch_start(self, *_: Any, **__: Any) -> None:
        pass

    def on_validation_batch_end(self, *_: Any, **__: Any) -> None:
        pass

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":  # the training bar is there
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_test_start(self, *_: Any) -> None:
        pass

    def on_test_batch_start(self, *_: Any, **__: Any) -> None:
        pass

    def on_test_batch_end(self, *_: Any, **__: Any) -> None:
        pass

    def on_test_end(self, *_: Any) -> None:
        pass


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(pl.Callback):
    """Stop the run when the training loss stops being finite, before a checkpoint records it.

    The check runs on the device and is read back only every ``check_every`` steps and before each
    validation (so before each checkpoint): no device sync per step. The error names the first bad
    step; the last checkpoint written is the last good one.
    """

    def __init__(self, check_every: int = 10):
        self.check_every = check_every
        # The losses since the last check, on the device (a detach per step, no other op), and
        # the step of the first of them.
        self._losses: list[torch.Tensor] = []
        self._first_step = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, *_: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if not self._losses:
            self._first_step = trainer.global_step
        self._losses.append(torch.as_tensor(loss).detach())
        if trainer.global_step % self.check_every == 0:
            self._check()

    def on_validation_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._check()

    def _check(self) -> None:
        if not self._losses:
            return
        finite = torch.isfinite(torch.stack(self._losses))
        self._losses, first = [], self._first_step
        if not bool(finite.all()):
            step = first + int((~finite).nonzero()[0])
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite at step {step}: the run stopped there, "
                "and its last checkpoint is the last good state (try a smaller learning rate)"
            )


class StopOnSignal(pl.Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's pre-emption notice), finish the current
    step (and its validation, if one is due), save ``last.ckpt`` and stop, so the run resumes
    exactly where it stopped.

    Python's default Ctrl-C raises wherever the program happens to be, possibly half-way through
    an optimizer step, and Lightning's own SIGTERM handling stops half-way through a validation;
    here the signal only sets a flag, and Lightning is asked to stop (``received_sigterm``) once
    the step is complete. It then raises ``SIGTERMException`` after writing the step's logs, and
    the checkpoint is saved in ``on_exception``. A second Ctrl-C interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpoint_path: str):
        self.checkpoint_path = checkpoint_path
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. not in joblib)
        for signum in self.SIGNALS:  # replaces Lightning's own SIGTERM handler during training
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._restore_handlers()

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        interval = trainer.val_check_batch
        validation_due = isinstance(interval, int) and trainer.global_step % interval == 0
        if self.received is not None and not validation_due:
            compat.stop_after_this_step(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self.received is not None and trainer.state.fn == "fit":
            compat.stop_after_this_step(trainer)  # the due validation is done

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
        if self.received is not None and isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # a full one
            name = signal.Signals(self.received).name
            exception.args = (
                f"{name} received: stopped after step {trainer.global_step} and saved "
                f"{self.checkpoint_path}",
            )


class RngState(pl.Callback):
    """Save and restore every random number generator with the checkpoints, so that a resumed run
    draws the same random numbers (dropout, augmentation) as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            # As plain lists and numbers: checkpoints load with torch.load(weights_only=True).
            "numpy": [
                v.tolist() if isinstance(v, np.ndarray) else v
                for v in np.random.get_state()  # noqa: NPY002
            ],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class TagCheckpoints(pl.Callback):
    """Write ``tags`` (e.g. which model was trained) into every checkpoint under ``"tags"``, so a
    checkpoint given to a run of another model is refused with a clear reason."""

    def __init__(self, **tags: Any):
        self.tags = tags

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["tags"] = dict(self.tags)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, for a run folder that may move.

    Lightning stores its bookkeeping (the best score, the best and last paths) with absolute
    paths, and restores it only if the checkpoint folder is where it was: a run copied or moved
    elsewhere would resume without its best score, and its final test would pick another
    checkpoint. With ``continues_run`` (``resume=``: the same run, wherever its folder is now) the
    stored paths are rebased onto this folder first. A new run started from another run's
    checkpoint (``ckpt_path=``) keeps Lightning's behaviour: the other folder's files are not its.
    """

    def __init__(self, *args: Any, continues_run: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.continues_run = continues_run

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if self.continues_run and old and self.dirpath and old != self.dirpath:
            state_dict = _rebased(state_dict, old, self.dirpath)
        super().load_state_dict(state_dict)


def _rebased(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``ModelCheckpoint``'s state with every path under ``old`` moved under ``new``."""

    def move(path: Any) -> Any:
        if isinstance(path, str) and path and os.path.dirname(path) == old:
            return os.path.join(new, os.path.basename(path))
        return path

    moved = {k: move(v) for k, v in state.items()}
    moved["dirpath"] = new
    if isinstance(state.get("best_k_models"), dict):
        moved["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    return moved
