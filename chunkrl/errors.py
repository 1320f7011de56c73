"""Errors every layer may raise (this module imports nothing from chunkrl)."""


class DatasetError(ValueError):
    """Raised when step data is malformed; the message says what is wrong and how to fix it."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: missing or damaged files, or another run's weights; the message says which."""
