"""``tdanet train --recipe RECIPE.yaml [section.key=value ...]``: train or fine-tune a model."""

from __future__ import annotations

import argparse
import sys

HELP = "train or fine-tune a model from a recipe (PyTorch Lightning)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="recipe YAML file (see recipes/)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides, e.g. data.root=/data trainer.max_epochs=2 model.init_from=M",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir exactly where it stopped (checkpoints/resume.ckpt)",
    )
    parser.add_argument(
        "--resume-from", metavar="CKPT", default=None, help="continue from this resume.ckpt"
    )


def run(args: argparse.Namespace) -> int:
    from ..errors import TrainingError
    from ..train import load_recipe, train

    recipe = load_recipe(args.recipe, args.overrides)
    result = train(recipe, resume=args.resume_from or ("auto" if args.resume else None))
    if not result.global_zero:
        return 0
    if result.skipped:
        print(f"skipped {len(result.skipped)} unusable data file(s):", file=sys.stderr)
        for line in result.skipped:
            print(f"  {line}", file=sys.stderr)
    if not result.best.is_file():
        raise TrainingError(
            "the run ended before its first validation, so it wrote no checkpoint; raise "
            "trainer.max_time or trainer.max_epochs"
        )
    print(f"best validation loss: {result.best_val_loss:.3f} (negative SI-SNR, dB)")
    print(f"checkpoints: {result.best} (best), {result.last} (last)")
    return 0
