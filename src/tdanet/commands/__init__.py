"""Subcommands of the ``tdanet`` CLI (see :mod:`tdanet.cli`)."""

from __future__ import annotations

import os
import sys


def warn_if_untrained(command: str, model: str | os.PathLike[str]) -> None:
    """Say on stderr when ``model`` is a preset whose weights are random, not trained."""
    from ..pretrained import untrained_note

    note = untrained_note(model)
    if note is not None:
        print(f"tdanet {command}: warning: {note}", file=sys.stderr)
