"""Checkpoints written whole or not at all."""

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vaelab.errors import DataError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes the checkpoint beside its target, flushes it to disk and renames it over the target.

    A kill or a full disk during a save leaves the previous checkpoint as it was: a rename
    within one folder is atomic, unlike Lightning's own write, whose temporary file may live on
    another device.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException as error:
            tmp.unlink(missing_ok=True)
            # A signal handler that exits (submitit's on SIGUSR2, a Ctrl-C) while torch.save
            # writes surfaces as the zip writer's RuntimeError, the exit only as its context:
            # the exit is what happened, and it must go on as one.
            interrupt = _interrupt_behind(error)
            if interrupt is not None:
                raise interrupt from None
            # A full disk or a vanished folder; torch.save reports a failed write inside its
            # zip writer as a RuntimeError.
            if isinstance(error, (OSError, RuntimeError)):
                reason = getattr(error, "strerror", None) or "the write failed (is the disk full?)"
                raise DataError(
                    f"cannot write checkpoint {path}: {reason}; the previous {path.name} is "
                    f"untouched"
                ) from error
            raise


def _interrupt_behind(error: BaseException) -> BaseException | None:
    """The SystemExit or KeyboardInterrupt that `error` is, or was raised while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        if not isinstance(error, Exception):
            return error
        seen.add(id(error))
        error = error.__context__
    return None
