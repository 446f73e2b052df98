"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input: a config value, a missing file, a dataset that cannot be read.

    Deriving from Hydra's compact exception keeps the message a single line even when Hydra
    reports it itself (inside a multirun job, say).
    """


class ConfigError(UserError, ValueError):
    """A config value that is out of range or of the wrong kind; the message names its path."""


class DataError(UserError, OSError):
    """Data that is missing or cannot be read; the message names the file or folder."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss or the weights stopped being finite; the message says what to change."""
