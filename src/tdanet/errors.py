"""User-facing errors: each message is one line naming what is wrong and what to do."""


class TDANetError(Exception):
    """Base of the errors the CLI reports as one line on stderr (no traceback)."""


class CheckpointError(TDANetError, ValueError):
    """A model source that cannot be loaded: missing, corrupt, unsafe or mismatched."""


class DataError(TDANetError, ValueError):
    """A dataset that cannot be used: missing folders, mismatched files, too few speakers."""


class ConfigError(TDANetError, ValueError):
    """A training recipe or override that is invalid: unknown keys, wrong types or values."""


class TrainingError(TDANetError):
    """A training run that cannot go on: its loss or its weights are no longer finite."""


class AudioError(TDANetError, ValueError):
    """An audio input or output that cannot be used; the message names the file."""


class AudioReadError(AudioError):
    """A file that is missing, not audio, corrupt or truncated."""


class AudioContentError(AudioError):
    """Audio that reads but cannot be separated: empty, too short, silent, NaN or Inf."""


class AudioWriteError(AudioError):
    """An output that cannot be written: unwritable folder, existing file, disk full."""


class CorpusError(TDANetError):
    """The demo corpus cannot be built: a package cannot be fetched, unpacked or converted."""
