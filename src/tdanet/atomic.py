"""Writing a file so that it appears whole or not at all."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """A hidden, unique name next to ``path``, so the final rename stays on one filesystem."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


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
