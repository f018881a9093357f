"""Split any one-input, one-output ONNX model into blocks the Strata servers can serve.

It finds the valid cut points (tensors that carry everything the later nodes need,
also in residual and branching graphs), picks at most --max-blocks blocks that balance
MACs (or keeps every cut with --all-cuts), checks the chained blocks against the full
model, and writes block{k}.onnx, full.onnx and manifest.json. Serve the result with
`strata serve` after pointing STRATA_MODELS_DIR at the folder, or `strata cloud --models DIR`.

With --samples it also writes samples.npz, the inputs the browser's worker and the
benchmarks run: each picture resized, centre-cropped and normalized as --scale, --mean,
--std and --bgr say (edge_server/split/samples.py), labelled with the full model's
argmax. E.g. ImageNet-style: --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225; Caffe-style
BGR mean subtraction on 0..255: --bgr --scale 1 --mean 104 117 123.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUMMARY = "Split any ONNX model at its valid cut points into blocks and a manifest the servers use."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.onnx", help="the model to split")
    parser.add_argument("--out", type=Path, help="output folder (default: build/split/NAME)")
    parser.add_argument("--name", help="model name in the manifest and the cloud's URLs (default: the file's stem)")
    parser.add_argument("--max-blocks", type=int, default=12,
                        help="at most this many blocks, balancing MACs (default: %(default)s)")
    parser.add_argument("--all-cuts", action="store_true", help="cut at every valid cut point instead")
    samples = parser.add_argument_group("sample inputs (samples.npz, for the worker and the benchmarks)")
    samples.add_argument("--samples", type=Path, nargs="+", metavar="IMG",
                         help="pictures (PNG, JPEG, ...) to turn into the model's input tensors")
    samples.add_argument("--mean", type=float, nargs="+", default=[0.0],
                         help="per-channel mean, in the model's channel order, after --scale (default: 0)")
    samples.add_argument("--std", type=float, nargs="+", default=[1.0],
                         help="per-channel standard deviation, after --scale (default: 1)")
    samples.add_argument("--scale", type=float, default=255.0, help="divide pixels (0..255) by this first "
                                                                    "(default: %(default)s)")
    samples.add_argument("--bgr", action="store_true", help="the model takes channels in BGR order")


def _table(manifest: dict) -> str:
    rows = [("block", "input", "output", "MACs", "params", "bytes out/sample")]
    rows += [(str(b["index"]), "x".join(map(str, b["input_shape"])), "x".join(map(str, b["output_shape"])),
              f"{b['macs']:,}", f"{b['params']:,}", f"{b['output_bytes_per_sample']:,}") for b in manifest["blocks"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def run(args: argparse.Namespace) -> int:
    from edge_server.config import REPO
    from edge_server.split.prepare import SplitError
    from edge_server.split.samples import Normalization, write_samples
    from edge_server.split.write import write_split

    name = args.name or args.model.stem
    out = args.out or REPO / "build" / "split" / name
    try:
        manifest = write_split(args.model, out, name, args.max_blocks, args.all_cuts)
    except SplitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    source = manifest["source"]
    print(f"{args.model}: {source['valid_cut_points']} valid cut points, {len(manifest['blocks'])} blocks "
          f"({source['rule']})")
    print(_table(manifest))
    print(f"chained blocks vs full model: max abs diff {manifest['full_graph']['chain_max_abs_diff']:.3g} "
          f"(random batch of 2)")
    if args.samples:
        norm = Normalization(tuple(args.mean), tuple(args.std), args.scale, args.bgr)
        try:
            manifest = write_samples(out, args.samples, norm)
        except (OSError, ValueError) as exc:
            print(f"error: --samples: {exc}", file=sys.stderr)
            return 1
        print(f"samples.npz: {manifest['samples']['count']} inputs, labelled by the full model's argmax")
    print(f"wrote {len(manifest['artifacts'])} files and manifest.json to {out}")
    return 0

