"""Errors a user can fix. The CLI prints them as one line and exits with their exit_code."""

import re

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input: a config value, a missing file, a dataset that cannot be read.

    Deriving from Hydra's compact exception keeps the message a single line even when Hydra
    reports it itself (inside a multirun job, say).
    """

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A config value that is out of range or of the wrong kind; the message names its path."""


class DataError(UserError, OSError):
    """Data that is missing or cannot be read; the message names the file or folder."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss or the weights stopped being finite; the message says what to change."""


class OutOfMemory(UserError, MemoryError):
    """A tensor that did not fit in the memory of the CPU or the GPU: the settings that size the
    work are the user's to lower."""

    @classmethod
    def from_error(cls, error: BaseException) -> "OutOfMemory | None":
        """This error as an OutOfMemory when it is torch's or Python's, else None."""
        text = str(error)
        if not (
            isinstance(error, MemoryError)
            or isinstance(error, RuntimeError)
            and ("can't allocate memory" in text or "out of memory" in text.lower())
        ):
            return None
        size = re.search(r"[Tt]ried to allocate ([\d.]+) ?(\w+)", text)
        what = f"{size.group(1)} {size.group(2)}" if size else "a tensor"
        if size and size.group(2) == "bytes":  # the CPU allocator's unit
            what = f"{int(size.group(1)) / 2**30:.1f} GiB"
        return cls(
            f"out of memory: {what} did not fit; lower data.batch_size, the samples per example "
            f"(model.k, metrics.iw_samples) or the model's size"
        )


class Preempted(UserError):
    """SIGTERM (a scheduler's pre-emption, `kill`): the run was saved and can be resumed. The
    exit status is the conventional 128 + 15, so a job script sees that it did not finish."""

    exit_code = 143


class AlreadyFinished(UserError):
    """A resume of a run that has nothing left to do: said, not an error, and nothing written."""

    exit_code = 0
