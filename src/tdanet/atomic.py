"""Writing a file so that it appears whole or not at all."""

from __future__ import annotations

import glob
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A temporary that has not been written to for this long belongs to a killed writer: a live
# one keeps its file's modification time fresh.
STALE_AFTER_S = 600.0
TEMP_SUFFIX = re.compile(r"\.[0-9a-f]{8}\.tmp")


def temporary_path(path: Path) -> Path:
    """A hidden, unique name next to ``path``, so the final rename stays on one filesystem."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(path: Path, now: float | None = None) -> list[Path]:
    """Delete the temporary files of ``path`` (:func:`temporary_path` names) left by a killed
    writer: only plain files unchanged for :data:`STALE_AFTER_S`. Returns those deleted."""
    now = time.time() if now is None else now
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not TEMP_SUFFIX.fullmatch(candidate.name[len(path.name) + 1 :]):
            continue
        try:
            info = candidate.lstat()
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= STALE_AFTER_S:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def staging_directory(path: Path) -> Path:
    """A new, empty hidden folder next to ``path``, to fill and then rename to ``path``.

    Unlike ``tempfile.mkdtemp`` (always mode 0700), it gets the user's umask.
    """
    temp = temporary_path(path)
    temp.mkdir()
    return temp


@contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, else delete it.

    Unlike ``tempfile.mkstemp`` (always mode 0600), a file created at the temporary path
    gets the user's umask, like any other output.
    """
    temp = temporary_path(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
