"""Writing a file so that it appears whole or not at all, and folders that one process holds."""

from __future__ import annotations

import fcntl
import glob
import os
import re
import secrets
import shutil
import socket
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


def try_lock_folder(path: Path) -> int | None:
    """A descriptor of folder ``path`` holding an exclusive ``flock``, or None if another
    descriptor holds it; closing the descriptor releases the lock."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


# Inside an owned staging folder: "<host> <pid>" of the process filling it.
OWNER_FILE = ".owner"


def owned_staging_directory(path: Path) -> Path:
    """A :func:`staging_directory` that records which process fills it (:data:`OWNER_FILE`),
    so that a later run can tell whether it was abandoned (:func:`remove_abandoned_staging`).
    Move it into place with :func:`promote_staging`."""
    temp = staging_directory(path)
    (temp / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return temp


def promote_staging(temp: Path, path: Path) -> None:
    """Rename a filled :func:`owned_staging_directory` to ``path`` (absent or an empty folder),
    without its owner record."""
    (temp / OWNER_FILE).unlink(missing_ok=True)
    if path.exists():
        path.rmdir()
    temp.rename(path)


def _process_ended(owner: str) -> bool:
    """Whether an :data:`OWNER_FILE` names a process of this host that no longer runs."""
    fields = owner.split()
    if len(fields) != 2 or fields[0] != socket.gethostname() or not fields[1].isdigit():
        return False  # another machine's, or unreadable: not ours to judge
    try:
        os.kill(int(fields[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def remove_abandoned_staging(path: Path) -> list[Path]:
    """Delete the :func:`owned_staging_directory` folders of ``path`` whose owner process has
    ended on this host: what a killed run left. Folders without an owner record, of another
    host or of a running process are kept. Returns those deleted."""
    removed = []
    for candidate in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        if not TEMP_SUFFIX.fullmatch(candidate.name[len(path.name) + 1 :]):
            continue
        try:
            owner = (candidate / OWNER_FILE).read_text()
        except OSError:
            continue
        if candidate.is_dir() and not candidate.is_symlink() and _process_ended(owner):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


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
