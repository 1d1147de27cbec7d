"""``tdanet evaluate --model M DATA``: per-utterance SI-SNRi/SDRi (and PESQ, STOI) to CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "score a model on mixtures with reference sources (SI-SNRi, SDRi; optional PESQ, STOI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a split folder with a mixture folder (mix_clean, mix, or mix_both) and s1, s2, ... "
        "e.g. Libri2Mix/wav8k/min/test, WHAM/tt, LRS2-2Mix/tt, or a `tdanet mix` output split",
    )
    parser.add_argument("--model", required=True, help="preset, bundled or hub name, or checkpoint")
    parser.add_argument("--mix-dir", default=None, help="mixture folder name (default: detected)")
    parser.add_argument(
        "--csv", default="evaluation.csv", help="per-utterance results (default: evaluation.csv)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    parser.add_argument("--pesq", action="store_true", help="also compute PESQ (slow)")
    parser.add_argument("--stoi", action="store_true", help="also compute STOI")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N mixtures")


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..evaluation import evaluate_to_csv, evaluation_dataset
    from ..fast import optimize_for_inference
    from ..pretrained import load_model, require_tdanet
    from . import warn_if_untrained

    csv_path = Path(args.csv)
    if csv_path.exists() and not args.force:
        raise DataError(f"{csv_path}: already exists; pass --force to overwrite or choose --csv")
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be positive, got {args.limit}")
    model = require_tdanet(load_model(args.model), "tdanet evaluate")
    rate = model.config.sample_rate
    dataset = evaluation_dataset(Path(args.data), rate, args.mix_dir)
    warn_if_untrained("evaluate", args.model)

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} mixtures", end="" if done < total else "\n", file=sys.stderr)

    summary = evaluate_to_csv(
        optimize_for_inference(model),
        dataset,
        rate,
        csv_path,
        args.pesq,
        args.stoi,
        args.limit,
        progress if sys.stderr.isatty() else None,
    )
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    print(f"mixtures: {count}")
    for key, value in summary.items():
        print(f"{key}: {value:.2f}")
    print(f"per-utterance results: {csv_path}")
    return 0
