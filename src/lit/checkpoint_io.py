"""Checkpoints written atomically and read without running code."""

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from src.checks import load_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it, flush it to disk, then rename it; read
    each one with ``src.checks.load_checkpoint`` (tensors and plain data only).

    A kill or a full disk during the write leaves the previous checkpoint of that name intact.
    Lightning's own writer stages the file in the system's temporary folder, and its final move is
    a copy, not an atomic rename, wherever that folder is on another file system (common on
    clusters). Lightning's own reader unpickles whatever ``torch.load``'s default admits, which
    before torch 2.6 is anything; this one is how Lightning reads every checkpoint of a run (to
    resume, and the best one for the final test).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:
            # torch reports a full disk as a RuntimeError ("file write failed"): one OSError,
            # which src.train reports in a sentence. The previous checkpoint is untouched.
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip()
            raise OSError(
                f"cannot write the checkpoint {path} ({reason}): is the disk full, or the folder "
                "read-only? The previous checkpoint is intact"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location: Any = "cpu", weights_only=None) -> dict:
        # weights_only is always True here, whatever Lightning asks for.
        return load_checkpoint(path, map_location=map_location)
