"""What each tensor codec costs and loses, on the 10k Fashion-MNIST test images.

The browser runs conv1 and the branch (the shared code the worker runs); the samples
that do not exit are offloaded: their conv1 output is encoded with each codec, decoded
as the edge would, and finished by the main path in onnxruntime. Reported per codec:
bytes per offloaded sample (mean), and system accuracy (exited samples answered by the
branch, the rest by the main path on the decoded tensor).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
from strata.codecs import CODECS, decode_tensor, encode_tensor
from strata.executor import load_browser_model

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from training.data import load_raw

BATCH = 500


def measure(models_dir: Path) -> list[dict]:
    manifest = json.loads((models_dir / "manifest.json").read_text())
    bundle = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {bundle: (models_dir / bundle).read_bytes()})
    main_path = MainPath(models_dir)
    images, labels = load_raw("t10k")
    rows = {codec: {"codec": codec, "bytes": [], "right": 0, "encode_ms": [], "decode_ms": []} for codec in CODECS}
    exited_right = exits = 0
    for first in range(0, len(labels), BATCH):
        part = slice(first, first + BATCH)
        result = model.run(images[part])
        truth = labels[part]
        exits += int(result.exits.sum())
        exited_right += int((result.logits.argmax(1) == truth)[result.exits].sum())
        features, wanted = result.features[~result.exits], truth[~result.exits]
        for codec, row in rows.items():
            for i in range(0, len(features), 50):  # per-sample sizes, timed in small groups
                chunk = features[i:i + 50]
                begin = time.perf_counter()
                encoded = [encode_tensor(x[None], codec) for x in chunk]
                middle = time.perf_counter()
                decoded = np.concatenate([decode_tensor(header, payload) for header, payload in encoded])
                end = time.perf_counter()
                row["bytes"] += [len(payload) for _, payload in encoded]
                row["encode_ms"].append((middle - begin) * 1000 / len(chunk))
                row["decode_ms"].append((end - middle) * 1000 / len(chunk))
                logits = main_path.run(decoded, 1, len(main_path))
                row["right"] += int((logits.argmax(1) == wanted[i:i + 50]).sum())
        print(f"  {min(first + BATCH, len(labels))}/{len(labels)} images", flush=True)
    offloaded = len(labels) - exits
    return [{"codec": codec, "bytes_per_offload": statistics.mean(row["bytes"]),
             "system_accuracy": (exited_right + row["right"]) / len(labels),
             "offloaded_accuracy": row["right"] / offloaded,
             "encode_ms": statistics.median(row["encode_ms"]), "decode_ms": statistics.median(row["decode_ms"]),
             "exit_rate": exits / len(labels)} for codec, row in rows.items()]


def main(out: Path) -> int:
    rows = measure(Settings().models_dir)
    reference = next(r for r in rows if r["codec"] == "f32")
    lines = ["| codec | bytes per offload | vs f32 | system accuracy | change (points) | encode (ms) | decode (ms) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['codec']} | {r['bytes_per_offload']:.0f} | {reference['bytes_per_offload'] / r['bytes_per_offload']:.1f}x "
                     f"| {100 * r['system_accuracy']:.2f} % | {100 * (r['system_accuracy'] - reference['system_accuracy']):+.2f} "
                     f"| {r['encode_ms']:.3f} | {r['decode_ms']:.3f} |")
    table = "\n".join(lines) + f"\n\n{10000} test images, exit rate {100 * rows[0]['exit_rate']:.1f} %; " \
        "bytes and times per offloaded sample (CPython, this machine).\n"
    print("\n" + table)
    (out / "codecs.json").write_text(json.dumps(rows, indent=1))
    (out / "codecs.md").write_text(table)
    return 0
