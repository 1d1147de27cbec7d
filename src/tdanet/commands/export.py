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

    from ..export import CHECK_LENGTHS, export_onnx
    from ..pretrained import load_model, require_tdanet
    from . import refuse_existing_output, warn_if_untrained

    output = Path(args.output)
    refuse_existing_output(output, args.force)
    model = require_tdanet(load_model(args.model), "tdanet export")
    warn_if_untrained("export", args.model)
    lengths = () if args.no_check else CHECK_LENGTHS
    export_onnx(model, output, check_lengths=lengths)
    sizes = ", ".join(map(str, lengths))
    checked = f"; onnxruntime matches PyTorch on inputs of {sizes} samples" if lengths else ""
    print(f"wrote {output}{checked}")
    return 0
