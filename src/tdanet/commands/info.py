"""``tdanet info MODEL``: what a model is (config, parameters, source)."""

from __future__ import annotations

import argparse
import json

HELP = "show a model's configuration and parameter count"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="preset name, checkpoint file or hub name")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..pretrained import load_model

    model = load_model(args.model)
    report = {
        "model": args.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": model.config.to_dict(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"model: {report['model']}")
        print(f"parameters: {report['parameters']:,}")
        for key, value in report["config"].items():
            print(f"  {key}: {value}")
    return 0
