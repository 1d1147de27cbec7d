"""``tdanet info MODEL``: what a model is (config, parameters, whether its weights are trained)."""

from __future__ import annotations

import argparse
import json

HELP = "show a model's configuration and parameter count"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="preset name, checkpoint file or hub name")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..pretrained import load_model, untrained_note
    from . import warn_if_untrained

    model = load_model(args.model)
    trained = untrained_note(args.model) is None
    report = {
        "model": args.model,
        "trained": trained,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": model.config.to_dict(),
    }
    warn_if_untrained("info", args.model)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"model: {report['model']}")
        print(f"weights: {'trained (loaded)' if trained else 'random: an untrained preset'}")
        print(f"parameters: {report['parameters']:,}")
        for key, value in report["config"].items():
            print(f"  {key}: {value}")
    return 0
