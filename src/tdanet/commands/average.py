"""``tdanet average CHECKPOINT... --out FILE``: one model from the mean of several's weights."""

from __future__ import annotations

import argparse

HELP = "average the weights of checkpoints of one network (say a run's last epochs) into one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files of the same network")
    parser.add_argument("--out", required=True, help="file to write, e.g. averaged.pt")
    parser.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import average_checkpoints
    from ..errors import CheckpointError
    from . import refuse_existing_output

    output = Path(args.out)
    refuse_existing_output(output, args.force)
    if output.resolve() in {Path(p).resolve() for p in args.checkpoints}:
        raise CheckpointError(f"{output}: is one of the inputs; write the mean to a new file")
    average_checkpoints(args.checkpoints, output)
    print(f"wrote {output}: the mean of {len(args.checkpoints)} checkpoints' weights")
    return 0
