"""Errors a user can fix. The CLI prints them as one line and exits with their exit_code."""

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


class Preempted(UserError):
    """SIGTERM (a scheduler's pre-emption, `kill`): the run was saved and can be resumed. The
    exit status is the conventional 128 + 15, so a job script sees that it did not finish."""

    exit_code = 143


class AlreadyFinished(UserError):
    """A resume of a run that has nothing left to do: said, not an error, and nothing written."""

    exit_code = 0
