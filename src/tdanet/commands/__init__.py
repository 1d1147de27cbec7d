"""Subcommands of the ``tdanet`` CLI (see :mod:`tdanet.cli`)."""

from __future__ import annotations

import argparse
import os
import sys

# Most chunk workers a default picks: past this, memory grows faster than speed.
MAX_DEFAULT_WORKERS = 4


def warn_if_untrained(command: str, model: str | os.PathLike[str]) -> None:
    """Say on stderr when ``model`` is a preset whose weights are random, not trained."""
    from ..pretrained import untrained_note

    note = untrained_note(model)
    if note is not None:
        print(f"tdanet {command}: warning: {note}", file=sys.stderr)


def refuse_existing_output(path: os.PathLike[str] | str, force: bool) -> None:
    """Stop in one line before any work when output file ``path`` exists and ``--force``
    was not given: a user's file is never replaced unasked."""
    from ..errors import TDANetError

    if os.path.exists(path) and not force:
        raise TDANetError(f"{path}: already exists; pass --force to overwrite it")


def add_cpu_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--threads``, shared by the commands that separate recordings."""
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="chunks of a long recording separated at once, each on one core (default: the "
        f"number of cores, at most {MAX_DEFAULT_WORKERS}; 1 on a GPU)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads inside each model call (default: 1 with several workers, else all "
        "cores)",
    )


def apply_cpu_arguments(args: argparse.Namespace) -> int:
    """Set torch's threads from ``--threads``/``--workers`` and return the worker count.

    Waiting threads do not spin: :func:`tdanet.cli.main` sets ``OMP_WAIT_POLICY=PASSIVE``
    (unless set) before any command loads torch.
    """
    from ..errors import TDANetError

    for name in ("workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TDANetError(f"--{name} must be at least 1, got {value}")
    import torch

    cores = os.cpu_count() or 1
    on_cpu = str(getattr(args, "device", "cpu")).startswith("cpu")
    workers = args.workers or (min(cores, MAX_DEFAULT_WORKERS) if on_cpu else 1)
    threads = args.threads or (1 if workers > 1 else cores)
    torch.set_num_threads(threads)
    return workers
