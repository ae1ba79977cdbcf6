"""User-facing errors: each says what was wrong and what to do (design.md, Conventions).

The CLI prints ``str(error)`` as one line and exits with code 2.
"""


class MienError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MienError):
    """A data set, folder, file or array is missing, empty, corrupt or malformed."""


class ConfigError(MienError):
    """An unknown option, a bad value or an inconsistent configuration."""


class OutputError(MienError):
    """An output location cannot be written (missing permission, full disk)."""


class FaceNotFound(DataError):
    """No face was detected in a photograph that had to be aligned."""
