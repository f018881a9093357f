"""Split any one-input, one-output ONNX model into blocks the Strata servers can serve.

It finds the valid cut points (tensors that carry everything the later nodes need,
also in residual and branching graphs), picks at most --max-blocks blocks that balance
MACs (or keeps every cut with --all-cuts), checks the chained blocks against the full
model, and writes block{k}.onnx, full.onnx and manifest.json. Serve the result with
`strata serve` after pointing STRATA_MODELS_DIR at the folder, or `strata cloud --models DIR`.
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


def _table(manifest: dict) -> str:
    rows = [("block", "input", "output", "MACs", "params", "bytes out/sample")]
    rows += [(str(b["index"]), "x".join(map(str, b["input_shape"])), "x".join(map(str, b["output_shape"])),
              f"{b['macs']:,}", f"{b['params']:,}", f"{b['output_bytes_per_sample']:,}") for b in manifest["blocks"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def run(args: argparse.Namespace) -> int:
    from edge_server.config import REPO
    from edge_server.split import SplitError, write_split

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
    print(f"wrote {len(manifest['artifacts'])} files and manifest.json to {out}")
    return 0
