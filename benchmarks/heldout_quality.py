"""Separation quality on voices no model here was trained or validated on, in one table.

    python benchmarks/heldout_quality.py --corpus data/corpus --noise data/noise \\
        --recipe recipes/tdanet-demo.yaml old=old-demo.pt new=tdanet-demo

The test speakers are the recipe's ``data.held_out_speakers`` (real voices only); the noise
files are the recipe seed's test share of ``--noise`` (``split_noise``), never trained on; the
rooms come from a bank (seed 1) that training (seed 0) does not use. Three fixed sets of
``--items`` two-speaker mixtures, every sample of which holds both talkers:

* ``4s``: 4 s windows filled with each speaker's speech (more utterances of the same speaker
  follow a short one), each source at a loudness drawn from -33..-25 LUFS (LibriMix);
* ``whole``: whole utterances cropped to the shorter one (LibriMix's ``min`` mode);
* ``4s noisy reverberant``: as ``4s``, the second talker -5..5 dB relative to the first, in a
  room with RT60 0.2-0.6 s (reverberant targets), plus real noise at 0-10 dB SNR.

Each model (``NAME=MODEL``: a file, bundled or hub name) separates every mixture whole; the
table gives mean and median SI-SNRi (dB, best permutation) per set, and the CPU seconds per
second of audio of each model, measured in this process (one thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tdanet import load_model
from tdanet.data.mixing import DynamicMixDataset, MixingConfig, MixtureDrawer
from tdanet.data.sources import index_noise, index_sources, matches
from tdanet.losses import pit_si_snr, si_snr
from tdanet.train import load_recipe
from tdanet.train.datamodule import split_noise

# Streams apart from training (0) and validation (1) draws of the same seed.
TEST_STREAM = 2
TEST_ROOMS = 1


def test_sets(
    corpus: Path, noise_root: Path | None, patterns: list[str], seed: int, rate: int, items: int
) -> dict[str, DynamicMixDataset]:
    """The three fixed held-out sets described in the module docstring."""
    utterances = [u for u in index_sources(corpus) if matches(u.speaker, patterns)]
    noises = None if noise_root is None else split_noise(index_noise(noise_root), seed)["test"]
    common = {"sample_rate": rate, "max_amplitude": 0.9}
    configs = {
        "4s": (MixingConfig(segment=4.0, fill=1.0, **common), None),
        "whole": (MixingConfig(segment=None, mode="min", **common), None),
        "4s noisy reverberant": (
            MixingConfig(
                segment=4.0,
                fill=1.0,
                gain="snr",
                snr_db=(-5.0, 5.0),
                noise_snr_db=(0.0, 10.0),
                reverb_prob=1.0,
                rt60=(0.2, 0.6),
                room_seed=TEST_ROOMS,
                room_count=items,
                **common,
            ),
            noises,
        ),
    }
    return {
        name: DynamicMixDataset(
            MixtureDrawer(utterances, config, noise), items, seed, TEST_STREAM, fixed=True
        )
        for name, (config, noise) in configs.items()
        if noise is not None or "noisy" not in name
    }


def scores(
    model: torch.nn.Module, items: list[tuple[torch.Tensor, torch.Tensor, str]]
) -> tuple[np.ndarray, float]:
    """Per-mixture SI-SNRi (dB) and CPU seconds per second of audio."""
    gains, cpu, audio = [], 0.0, 0.0
    with torch.inference_mode():
        for mixture, sources, _ in items:
            start = time.process_time()
            estimates = model(mixture.unsqueeze(0)).float()
            cpu += time.process_time() - start
            audio += mixture.shape[-1]
            score, _ = pit_si_snr(estimates, sources.unsqueeze(0))
            baseline = si_snr(mixture.expand_as(sources), sources).mean()
            gains.append(float(score[0] - baseline))
    return np.array(gains), cpu / (audio / 16000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument(
        "--noise", type=Path, default=None, help="noise folder (tdanet corpus --noise-out)"
    )
    parser.add_argument("--recipe", type=Path, required=True, help="its held_out_speakers and seed")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument(
        "--speakers",
        nargs="+",
        default=None,
        help="score these voices (names or patterns) instead of the recipe's held-out ones, "
        "e.g. training voices, to tell under-fitting from poor generalisation",
    )
    parser.add_argument("models", nargs="+", help="NAME=MODEL pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe, [f"data.root={args.corpus}"])
    patterns = list(args.speakers or recipe.data.held_out_speakers)
    if not patterns:
        print("the recipe names no held_out_speakers; name voices with --speakers", file=sys.stderr)
        return 1
    sets = test_sets(
        args.corpus, args.noise, patterns, recipe.seed, recipe.data.sample_rate, args.items
    )
    speakers = sorted(
        {u.speaker for u in index_sources(args.corpus) if matches(u.speaker, patterns)}
    )
    kind = "chosen" if args.speakers else "held-out"
    print(f"{len(speakers)} {kind} speakers: {', '.join(speakers)}")
    materialised = {name: [data[i] for i in range(len(data))] for name, data in sets.items()}
    for name, items in materialised.items():
        seconds = sum(m.shape[-1] for m, _, _ in items) / recipe.data.sample_rate
        print(f"set {name}: {len(items)} mixtures, {seconds / 60:.1f} min")
    header = ["model", "params", "CPU s per s"] + [f"{n} mean / median" for n in materialised]
    rows = []
    for pair in args.models:
        label, _, source = pair.partition("=")
        model = load_model(source or label)
        cells, speed = [], []
        for items in materialised.values():
            gains, cpu = scores(model, items)
            cells.append(f"{gains.mean():.2f} / {np.median(gains):.2f}")
            speed.append(cpu)
        params = sum(p.numel() for p in model.parameters())
        rows.append([label, f"{params:,}", f"{np.median(speed):.4f}", *cells])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
