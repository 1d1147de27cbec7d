"""``tdanet export``: write a model for another runtime (ONNX, dynamic length)."""

from __future__ import annotations

import argparse

HELP = "export a model to ONNX (dynamic batch and length; runs with onnxruntime)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="preset, bundled or hub name, or checkpoint path")
    parser.add_argument("output", help="file to write, e.g. model.onnx")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    parser.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported file on odd lengths against PyTorch",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import ExportError, export_onnx, verify_onnx
    from ..pretrained import load_model

    output = Path(args.output)
    if output.exists() and not args.force:
        raise ExportError(f"{output}: already exists; pass --force to overwrite it")
    model = load_model(args.model)
    export_onnx(model, output)
    print(f"wrote {output}")
    if not args.no_check:
        worst = verify_onnx(model, output)
        print(f"checked with onnxruntime on odd lengths: max abs difference {worst:.2e}")
    return 0
