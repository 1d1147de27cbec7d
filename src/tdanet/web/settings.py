"""Limits and options of the web server, in one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import TDANetError

MIB = 1024 * 1024
# Names a local server is reached by.
LOCAL_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


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
            after every request); locked while the server runs. ``None``: a fresh temporary
            folder, deleted at shutdown.
        model_name: the model's name shown by ``/api/info`` and in responses.
        max_uploads: uploads received at the same time; one more is answered with 503.
            An upload takes a queue place only once it is complete.
        upload_timeout_s: longest time an upload may take (408 after it), so slow clients
            cannot hold upload places.
        allowed_hosts: host names (``Host`` header, port ignored) the server answers;
            others get 400, which stops DNS-rebinding pages from driving a local server.
            ``"*"`` allows any.
    """

    max_upload_bytes: int = 100 * MIB
    max_duration_s: float = 300.0
    max_concurrent: int = 1
    max_queue: int = 4
    work_dir: Path | None = None
    model_name: str = ""
    max_uploads: int = 8
    upload_timeout_s: float = 120.0
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS

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
        if self.max_uploads < 1:
            raise WebSettingsError(f"concurrent uploads must be at least 1, got {self.max_uploads}")
        if not (math.isfinite(self.upload_timeout_s) and self.upload_timeout_s > 0):
            raise WebSettingsError(
                f"upload time limit must be a positive number of seconds, got "
                f"{self.upload_timeout_s}"
            )
        if not self.allowed_hosts or not all(h.strip() for h in self.allowed_hosts):
            raise WebSettingsError(
                f"allowed hosts must be non-empty names, got {self.allowed_hosts}"
            )
        if self.work_dir is not None and self.work_dir.exists() and not self.work_dir.is_dir():
            raise WebSettingsError(f"{self.work_dir}: working folder is a file; pass a folder")

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.max_concurrent + self.max_queue
