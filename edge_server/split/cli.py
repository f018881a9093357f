"""Split any one-input, one-output ONNX model into blocks the Strata servers can serve.

It finds the valid cut points (tensors that carry everything the later nodes need,
also in residual and branching graphs), picks at most --max-blocks blocks that balance
MACs (or keeps every cut with --all-cuts), checks the chained blocks against the model
file given, and writes block{k}.onnx, full.onnx and manifest.json. Serve the result with
`strata serve` after pointing STRATA_MODELS_DIR at the folder, or `strata cloud --models DIR`.
docs/split.md says which graphs it supports, which it refuses, and why.

The picture options say how a photo becomes the model's input (the manifest records
them as input.preprocess; strata.preprocess.picture_to_input applies them): resize,
centre crop, channel order, (pixels / scale - mean) / std. E.g. ImageNet-style: --mean 0.485 0.456
0.406 --std 0.229 0.224 0.225; Caffe-style BGR mean subtraction on 0..255: --bgr --scale 1
--mean 104 117 123. With --samples it also writes samples.npz, those pictures as input
tensors, labelled (for a classifier) with the full model's argmax.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from strata.preprocess import RESIZE_RULES, PictureRule

SUMMARY = "Split any ONNX model at its valid cut points into blocks and a manifest the servers use."
PICTURE_OPTIONS = ("mean", "std", "scale", "bgr", "resize", "crop_fraction")


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 3,224,224, not {text!r}")
    return dims


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.onnx", help="the model to split")
    parser.add_argument("--out", type=Path, help="output folder (default: build/split/NAME)")
    parser.add_argument("--name", help="model name in the manifest and the cloud's URLs (default: the file's stem)")
    parser.add_argument("--max-blocks", type=int, default=12,
                        help="at most this many blocks, balancing MACs (default: %(default)s)")
    parser.add_argument("--all-cuts", action="store_true", help="cut at every valid cut point instead")
    parser.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                        help="the per-sample input shape, for a model whose height, width... are dynamic")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="class labels, one per line (default: any the model's metadata holds)")
    picture = parser.add_argument_group("pictures: how a photo becomes the model's input (recorded in the manifest)")
    picture.add_argument("--samples", type=Path, nargs="+", metavar="IMG",
                         help="pictures (PNG, JPEG, ...) to turn into input tensors (samples.npz)")
    picture.add_argument("--mean", type=float, nargs="+",
                         help="per-channel mean, in the model's channel order, after --scale (default: 0)")
    picture.add_argument("--std", type=float, nargs="+",
                         help="per-channel standard deviation, after --scale (default: 1)")
    picture.add_argument("--scale", type=float, help="divide pixels (0..255) by this first (default: 255)")
    picture.add_argument("--bgr", action="store_true", default=None, help="the model takes channels in BGR order")
    picture.add_argument("--resize", choices=sorted(RESIZE_RULES),
                         help="; ".join(f"{k}: {v}" for k, v in RESIZE_RULES.items()) + " (default: shorter)")
    picture.add_argument("--crop-fraction", type=float,
                         help="the centre crop's share of the resized picture (default: 0.875, 224 of 256)")


def picture_rule(args: argparse.Namespace) -> PictureRule | None:
    """The PictureRule the options give, or None if none was given (the defaults are assumed)."""
    given = {name: getattr(args, name) for name in PICTURE_OPTIONS if getattr(args, name) is not None}
    if not given:
        return None
    bgr = given.pop("bgr", False)
    return PictureRule(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()},
                       channel_order="BGR" if bgr else "RGB")


def _table(manifest: dict) -> str:
    rows = [("block", "input", "output", "MACs", "params", "bytes out/sample")]
    rows += [(str(b["index"]), "x".join(map(str, b["input_shape"])), "x".join(map(str, b["output_shape"])),
              f"{b['macs']:,}", f"{b['params']:,}", f"{b['output_bytes_per_sample']:,}") for b in manifest["blocks"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def run(args: argparse.Namespace) -> int:
    from edge_server.config import REPO
    from edge_server.split import SplitError
    from edge_server.split.write import make_split, write_folder

    name = args.name or args.model.stem
    out = args.out or REPO / "build" / "split" / name
    try:
        split = make_split(args.model, name, args.max_blocks, args.all_cuts, input_shape=args.input_shape,
                           rule=picture_rule(args), labels_file=args.labels, pictures=args.samples)
        write_folder(out, split.files, split.manifest)
    except SplitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manifest = split.manifest
    source, model_input, output = manifest["source"], manifest["input"], manifest["output"]
    print(f"{args.model}: {source['valid_cut_points']} valid cut points, {len(manifest['blocks'])} blocks "
          f"({source['rule']})")
    for note in split.notes:
        print(f"  {note}")
    print(_table(manifest))
    print(f"chained blocks vs {args.model.name}: max abs diff {source['chain_max_abs_diff']:.3g}; vs full.onnx: "
          f"{manifest['full_graph']['chain_max_abs_diff']:.3g} (random batch of 2)")
    labels = f", labels from {output['labels_from']}" if output["labels_from"] else ""
    print(f"input: {model_input['dtype']} {model_input['layout'] or ''} {model_input['shape']}; "
          f"output: {output['kind']} {output['shape']}{labels}")
    if "samples" in manifest:
        labelled = "labelled by the full model's argmax" if manifest["samples"]["labels"] else "without labels"
        print(f"samples.npz: {manifest['samples']['count']} inputs, {labelled}")
    print(f"wrote {len(manifest['artifacts'])} files and manifest.json to {out}")
    return 0
