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
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            # tqdm redraws at most every `mininterval` (0.1 s) and when the bar closes. Lightning's
            # own bar redraws every `refresh_rate` steps, whatever the speed: two redraws per 10
            # steps (the count, then the metrics) cost a near-zero model a sixth of its step
            # (docs/benchmark.md).
            bar.update(step - bar.n)

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


class SafeStop(pl.Callback):
    """Stop the run between two steps, with its checkpoints in order: on SIGINT (Ctrl-C) or
    SIGTERM (e.g. a cluster's pre-emption notice), and when the training loss stops being finite.

    **Signals.** Python's default Ctrl-C raises wherever the program happens to be, possibly
    half-way through an optimizer step, and Lightning's own SIGTERM handling stops half-way through
    a validation; here the signal only sets a flag. The current step (and its validation, if one is
    due) completes, Lightning is asked to stop (``received_sigterm``), raises ``SIGTERMException``
    after writing the step's logs, and ``checkpoint_path`` is saved in ``on_exception``: the run
    resumes exactly where it stopped. A second Ctrl-C interrupts at once.

    **Non-finite loss.** Checked on the device and read back only every ``check_every`` steps and
    before each validation (so before each checkpoint): no device sync per step. A NaN or infinite
    loss raises ``NonFiniteLossError`` naming the first bad step, before a checkpoint records it:
    the last checkpoint written is the last good one.

    One callback for both (they share the step-end hook): Lightning calls every hook of every
    callback on every step, so each callback object costs the loop time (``python -m scripts.bench
    fixed-cost``).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpoint_path: str, check_every: int = 10):
        self.checkpoint_path = checkpoint_path
        self.check_every = check_every
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        # The losses since the last check, on the device (a detach per step, no other op), and
        # the step of the first of them.
        self._losses: list[torch.Tensor] = []
        self._first_step = 0

    # -- signals ------------------------------------------------------------------------------

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

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
        if self.received is not None and isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # a full one
            name = signal.Signals(self.received).name
            exception.args = (
                f"{name} received: stopped after step {trainer.global_step} and saved "
                f"{self.checkpoint_path}",
            )

    # -- every step ---------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, *_: Any) -> None:
        step = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            if not self._losses:
                self._first_step = step
            self._losses.append(torch.as_tensor(loss).detach())
            if step % self.check_every == 0:
                self._check_losses()
        if self.received is not None:
            interval = trainer.val_check_batch
            validation_due = isinstance(interval, int) and step % interval == 0
            if not validation_due:
                compat.stop_after_this_step(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._check_losses()

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self.received is not None and trainer.state.fn == "fit":
            compat.stop_after_this_step(trainer)  # the due validation is done

    def _check_losses(self) -> None:
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


class CheckpointExtras(pl.Callback):
    """What every checkpoint carries beside the training state:

    - ``tags`` (e.g. which model was trained), under ``"tags"``, so a checkpoint given to a run of
      another model is refused with a clear reason (``src.checks.read_checkpoint``);
    - every random number generator, restored on resume, so that a resumed run draws the same
      random numbers (dropout, augmentation) as an uninterrupted one.
    """

    def __init__(self, tags: dict[str, Any] | None = None):
        self.tags = dict(tags or {})

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["tags"] = dict(self.tags)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        # Checkpoints written before this callback took over from RngState (2026-12-01) keep the
        # generators under that callback's name: a run started then resumes exactly too.
        states = checkpoint.get("callbacks") or {}
        if self.state_key not in states and "RngState" in states:
            self.load_state_dict(states["RngState"])

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


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, as the one owner of a run's checkpoints, in a run folder
    that may move.

    With ``save_last=True`` it keeps ``last.ckpt`` as the newest state: written after every
    validation and at the final step (Lightning writes it only at the steps where it keeps a new
    best checkpoint, and at the end only if it never wrote one), so ``resume=`` continues from the
    newest state and ``src.evaluate`` finds the weights a run ended with. One callback for both
    files: Lightning calls every hook of every callback on every step.

    Lightning stores its bookkeeping (the best score, the best and last paths) with absolute
    paths, and restores it only if the checkpoint folder is where it was: a run copied or moved
    elsewhere would resume without its best score, and its final test would pick another
    checkpoint. With ``continues_run`` (``resume=``: the same run, wherever its folder is now) the
    stored paths are rebased onto this folder first. A new run started from another run's
    checkpoint (``ckpt_path=``) keeps Lightning's behaviour: the other folder's files are not its.
    """

    def __init__(self, *args: Any, continues_run: bool = False, **kwargs: Any):
        self._state_key: str | None = None
        super().__init__(*args, **kwargs)
        self.continues_run = continues_run

    @property
    def state_key(self) -> str:
        # Lightning labels every hook call with it, several times a step, and ModelCheckpoint
        # formats it anew each time; what it is made of is fixed when the callback is built.
        if self._state_key is None:
            self._state_key = super().state_key
        return self._state_key

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_last(trainer)  # training ended between validations: the final state

    def _save_last(self, trainer: pl.Trainer) -> None:
        if self.save_last:
            compat.save_last_checkpoint(self, trainer)  # unless one was written at this step

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
