"""User-facing errors: each message is one line naming what is wrong and what to do."""


class TDANetError(Exception):
    """Base of the errors the CLI reports as one line on stderr (no traceback)."""


class CheckpointError(TDANetError, ValueError):
    """A model source that cannot be loaded: missing, corrupt, unsafe or mismatched."""
