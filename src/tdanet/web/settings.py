"""Limits and options of the web server, in one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import TDANetError

MIB = 1024 * 1024


class WebSettingsError(TDANetError, ValueError):
    """A web-server setting out of range (a limit that is not positive, a folder that is a file)."""


@dataclass(frozen=True)
class WebSettings:
    """What the server accepts and how much work it takes on at once.

    Attributes:
        max_upload_bytes: largest accepted upload (the audio file itself); larger uploads are
            stopped while streaming and answered with 413.
        max_duration_s: longest accepted recording in seconds, read from the decoded file's
            header before decoding it (413 when longer).
        max_concurrent: separations that run at the same time (each holds one decoded
            recording and the model's activations in memory).
        max_queue: requests that may wait for a free separation slot; one more is answered
            with 503 straight away, so memory and disk use stay bounded.
        work_dir: the only folder the server writes to (uploads, under random names, removed
            after every request). ``None``: a fresh temporary folder, deleted at shutdown.
        model_name: the model's name shown by ``/api/info`` and in responses.
    """

    max_upload_bytes: int = 100 * MIB
    max_duration_s: float = 300.0
    max_concurrent: int = 1
    max_queue: int = 4
    work_dir: Path | None = None
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise WebSettingsError(
                f"maximum upload size must be positive, got {self.max_upload_bytes} bytes"
            )
        if not (math.isfinite(self.max_duration_s) and self.max_duration_s > 0):
            raise WebSettingsError(
                f"maximum duration must be a positive number of seconds, got {self.max_duration_s}"
            )
        if self.max_concurrent < 1:
            raise WebSettingsError(
                f"concurrent separations must be at least 1, got {self.max_concurrent}"
            )
        if self.max_queue < 0:
            raise WebSettingsError(f"queue length must be 0 or more, got {self.max_queue}")
        if self.work_dir is not None and self.work_dir.exists() and not self.work_dir.is_dir():
            raise WebSettingsError(f"{self.work_dir}: working folder is a file; pass a folder")

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.max_concurrent + self.max_queue
