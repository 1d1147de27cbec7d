"""The ``tdanet`` command: a thin layer over the library, one module per subcommand.

Each module in ``tdanet.commands`` defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Sequence

from . import __version__
from .errors import TDANetError

COMMANDS: tuple[str, ...] = (
    "info",
    "corpus",
    "separate",
    "stream",
    "mix",
    "train",
    "evaluate",
    "serve",
    "profile",
    "export",
    "average",
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help when it has a default and its help does not
    already say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            # Identity, not equality: a default of 0 is shown, False (a flag's) is not.
            and not any(default is none for none in (None, False, argparse.SUPPRESS))
            and "default" not in text
        ):
            return f"{text} (default: %(default)s)"
        return action.help


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdanet", description="TDANet speech separation toolkit.")
    parser.add_argument("--version", action="version", version=f"tdanet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"tdanet.commands.{name}")
        sub = subparsers.add_parser(
            name, help=module.HELP, description=module.HELP, formatter_class=DefaultsHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


# Each command's positional list: argparse fills it only before the first option.
POSITIONAL_LISTS = {"train": "overrides", "separate": "inputs"}


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI's arguments; positional items may also follow the options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    items = POSITIONAL_LISTS.get(getattr(args, "command", ""))
    if extra and (items is None or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and items is not None:
        setattr(args, items, [*getattr(args, items), *extra])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit non-zero, no traceback."""
    # OpenMP reads its wait policy when torch loads: set it before any command imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # numpy's OpenBLAS spins threads of its own on our small products (voice features,
    # gains): 25 % of a busy machine's CPU time for `separate` (docs/separate.md). One thread.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = parse(argv)
    try:
        code: int = args.handler(args)
    except TDANetError as exc:
        print(f"tdanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tdanet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_is_closed():
            raise
        return 141  # the shell's code for a reader that went away (`tdanet info M | head`)
    return code


def stdout_is_closed() -> bool:
    """Whether standard output is a pipe whose reader went away (POSIX); if so, stdout is
    pointed at the null device so that Python's flush at exit does not fail again. A broken
    pipe elsewhere (a worker process) is not this, and stays an error."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return True


if __name__ == "__main__":
    sys.exit(main())
