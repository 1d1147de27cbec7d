"""The server's working folder: created, locked against a second server, cleaned of stale files.

The folder itself is locked (``flock`` on its descriptor, so nothing is added to it) for as
long as the server runs. A second server on the same folder is refused before it touches
anything, so it can never delete the first one's uploads. Once the lock is held, uploads
left by a killed server are removed; so are temporary folders (``tdanet-serve-*``) of killed
servers that ran without ``--work-dir``, when they are unlocked, ours and older than
:data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from ..atomic import try_lock_folder
from ..errors import TDANetError

# Uploads in the working folder are named with this prefix and a random token.
UPLOAD_PREFIX = "upload-"
UPLOAD_NAME = re.compile(rf"{UPLOAD_PREFIX}[0-9a-f]{{32}}")
# A server without --work-dir works in a fresh system temporary folder with this prefix.
TEMP_PREFIX = "tdanet-serve-"
# mkdtemp's suffix: 8 characters of letters, digits and underscores.
TEMP_NAME = re.compile(rf"{TEMP_PREFIX}[a-z0-9_]{{8}}")
# A temporary folder younger than this may belong to a server that is still starting.
STALE_AFTER_S = 60.0


class WorkDirError(TDANetError):
    """The working folder cannot be created, written or locked."""


def remove_stale_temporary_folders(parent: Path | None = None, now: float | None = None) -> None:
    """Delete ``tdanet-serve-*`` folders of killed servers in ``parent`` (the system temp).

    Only folders with our name pattern, owned by this user, unlocked (no server runs in
    them) and unchanged for :data:`STALE_AFTER_S` are removed.
    """
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    now = time.time() if now is None else now
    with suppress(OSError):
        for entry in parent.iterdir():
            with suppress(OSError):
                info = entry.lstat()
                if (
                    not TEMP_NAME.fullmatch(entry.name)
                    or not entry.is_dir()
                    or entry.is_symlink()
                    or info.st_uid != os.getuid()
                    or now - info.st_mtime < STALE_AFTER_S
                ):
                    continue
                fd = try_lock_folder(entry)
                if fd is None:
                    continue
                try:
                    shutil.rmtree(entry)
                finally:
                    os.close(fd)


class WorkDir:
    """The folder uploads go to, locked for this server until :meth:`close`.

    ``WorkDir(None)`` makes a fresh temporary folder (deleted by :meth:`close`); a
    configured folder is created if missing and kept. Raises :class:`WorkDirError` with
    one line when the folder cannot be created or written, or another server holds it.
    """

    def __init__(self, configured: Path | None) -> None:
        self.owned = configured is None
        if configured is None:
            remove_stale_temporary_folders()
            self.path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        else:
            self.path = configured
            try:
                configured.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorkDirError(
                    f"{configured}: cannot create the working folder ({exc.strerror}); "
                    "pass a writable --work-dir"
                ) from None
            if not configured.is_dir():
                raise WorkDirError(f"{configured}: working folder is a file; pass a folder")
            if not os.access(configured, os.W_OK | os.X_OK):
                raise WorkDirError(
                    f"{configured}: the working folder is not writable; pass a writable --work-dir"
                )
        try:
            fd = try_lock_folder(self.path)
        except OSError as exc:
            raise WorkDirError(
                f"{self.path}: cannot lock the working folder ({exc.strerror})"
            ) from None
        if fd is None:
            raise WorkDirError(
                f"{self.path}: another tdanet serve is using this working folder; stop it or "
                "pass another --work-dir"
            )
        self._fd: int | None = fd
        if not self.owned:
            self._remove_stale_uploads()

    def _remove_stale_uploads(self) -> None:
        """Uploads left by a killed server (only ``upload-<32 hex digits>`` files)."""
        for stale in self.path.glob(f"{UPLOAD_PREFIX}*"):
            if UPLOAD_NAME.fullmatch(stale.name):
                with suppress(OSError):
                    stale.unlink()

    def close(self) -> None:
        """Release the lock; a temporary folder is deleted first."""
        if self._fd is None:
            return
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)
        self._fd = None
