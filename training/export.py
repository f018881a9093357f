"""Write the committed model artifacts from the trained checkpoint.

models/ receives: one ONNX file per main-path block and the full graph (batch norm
folded, dynamic batch), the browser bundle (conv1 + bit-packed binary branch), the
shipped sample images, torch's test-set predictions for the agreement tests, the
manifest (shapes, bytes per cut, MACs, parameters, calibrated exit rule and curve,
sha256 of every artifact) and the model card README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.data import DATASET_DIR
from training.train import DEFAULT_OUT

SUMMARY = "Export the ONNX blocks, the browser bundle and the manifest to models/."
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MANIFEST_VERSION = 1
MODEL_NAME = "strata-fashion-mnist"
SAMPLES_PER_CLASS = 30
SAMPLES_SEED = 1
OPSET = 17
CHAIN_TOLERANCE = 1e-5
LOGIT_TOLERANCE = 0.05  # branch logits, numpy executor vs torch (float16 classifier)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_OUT / "model.pt",
                        help="the trained model, from `strata train` (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DATASET_DIR, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="where the blocks, bundle, samples and manifest go (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.data import load_splits

    torch.set_num_threads(args.threads)
    if not args.checkpoint.is_file():
        print(f"error: no checkpoint at {args.checkpoint}: run `strata train` first")
        return 2
    splits = load_splits(args.data)  # DatasetMissing: `strata` says what to install
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = export(torch.load(args.checkpoint, weights_only=False), splits, args.out)
    bundle = manifest["browser_bundle"]
    print(f"wrote {len(manifest['artifacts'])} artifacts, manifest.json and README.md to {args.out} "
          f"in {time.perf_counter() - start:.0f} s")
    print(f"browser bundle {bundle['bytes']} bytes vs full ONNX {manifest['full_graph']['bytes']} bytes: "
          f"{bundle['ratio_vs_full_onnx']:.2f}x smaller")
    return 0


def export(checkpoint: dict, splits, out: Path) -> dict:
    """Write every artifact and return the manifest (also written as manifest.json)."""
    import torch

    from strata.bundle import FORMAT_VERSION, sha256, write_bundle
    from strata.preprocess import RAW_SIZE, prepare
    from training.calibrate import calibrate, figures_at_exit
    from training.card import model_card
    from training.data import CLASSES, subset
    from training.evaluate import evaluate
    from training.fold import branch_bundle
    from training.model import StrataNet
    from training.train import predict

    report = checkpoint["report"]
    mean, std = report["mean"], report["std"]
    model = StrataNet()
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    blocks, shapes = write_onnx_files(model, out)
    bundle_bytes = write_bundle(*branch_bundle(model))
    (out / "browser_bundle.bin").write_bytes(bundle_bytes)

    logits = {}
    for split in ("val", "test"):
        logits[split] = predict(model, torch.from_numpy(prepare(getattr(splits, f"{split}_x"), mean, std)))
        print(f"torch logits on the {split} split", flush=True)
    calibration = calibrate(logits["val"][1], logits["val"][0], splits.val_y)
    samples_x, samples_y, picks = subset(splits.test_x, splits.test_y, SAMPLES_PER_CLASS, SAMPLES_SEED)
    np.savez_compressed(out / "samples.npz", images=samples_x, labels=samples_y, test_index=picks,
                        main_logits=logits["test"][0][picks], branch_logits=logits["test"][1][picks])
    np.savez_compressed(out / "reference.npz", main_pred=logits["test"][0].argmax(1).astype(np.uint8),
                        branch_pred=logits["test"][1].argmax(1).astype(np.uint8))
    chain_diff = check_chain(out, [block["file"] for block in blocks], prepare(samples_x, mean, std))
    print(f"chained blocks vs full graph: max abs diff {chain_diff:.2e}", flush=True)

    files = [*(block["file"] for block in blocks), "full.onnx", "browser_bundle.bin", "samples.npz", "reference.npz"]
    full_bytes = (out / "full.onnx").stat().st_size
    manifest = {
        "format": "strata-model-manifest",
        "version": MANIFEST_VERSION,
        "name": MODEL_NAME,
        "model_id": sha256(bundle_bytes + (out / "full.onnx").read_bytes())[:16],
        "classes": list(CLASSES),
        "input": {"shape": list(shapes[0]), "raw_size": [RAW_SIZE, RAW_SIZE], "dtype": "float32",
                  "preprocessing": "zero-pad to 32x32, pixels / 255, then (x - mean) / std",
                  "mean": mean, "std": std},
        "blocks": blocks,
        "cuts": cut_entries(shapes),
        "full_graph": {"file": "full.onnx", "bytes": full_bytes, "input": "input", "output": "output",
                       "chain_max_abs_diff": chain_diff},
        "browser_bundle": {"file": "browser_bundle.bin", "format_version": FORMAT_VERSION, "contains_block": 0,
                           "bytes": len(bundle_bytes), "ratio_vs_full_onnx": full_bytes / len(bundle_bytes)},
        "exit": {key: calibration[key] for key in ("rule", "threshold", "tolerance", "validation", "curves")},
        "test": figures_at_exit(logits["test"], splits.test_y, calibration),
        "training": report,
        "samples": len(samples_y),
        **artifact_entries(out, files),
    }
    write_manifest(manifest, out)
    manifest["executor_agreement"] = executor_agreement(out, manifest, splits.test_x, logits["test"][1])
    print(f"executor vs torch: {manifest['executor_agreement']}", flush=True)
    deployed = evaluate(out, splits.test_x, splits.test_y)
    manifest["deployed_test"] = {key: deployed[key] for key in ("accuracy", "exit_rate", "exited_accuracy")}
    write_manifest(manifest, out)
    (out / "README.md").write_text(model_card(manifest))
    return manifest


def write_onnx_files(model, out: Path) -> tuple[list[dict], list[tuple]]:
    """One ONNX file per folded main-path block plus full.onnx; returns manifest block entries
    and the per-sample shapes at every cut (input first, logits last)."""
    import torch

    blocks, shapes, folded = write_block_files(model, out)
    write_onnx(torch.nn.Sequential(*folded), shapes[0], out / "full.onnx")
    print(f"exported {len(blocks)} block ONNX files and full.onnx", flush=True)
    return blocks, shapes


def write_block_files(model, out: Path) -> tuple[list[dict], list[tuple], list]:
    """blockN.onnx for every folded main-path block (pruned variants too, which have no full.onnx);
    returns the manifest block entries, the shapes at every cut and the folded modules."""
    import torch

    from training.fold import folded_block
    from training.model import INPUT_SIZE

    blocks = model.main_blocks()
    folded = [folded_block(block) for block in blocks]
    shapes = [(1, INPUT_SIZE, INPUT_SIZE)]
    with torch.no_grad():
        x = torch.zeros(1, *shapes[0])
        for block in folded:
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
    entries = []
    for index, (block, module) in enumerate(zip(blocks, folded)):
        write_onnx(module, shapes[index], out / f"block{index}.onnx")
        entries.append(block_entry(index, block, f"block{index}.onnx", shapes[index], shapes[index + 1], out))
    return entries, shapes, folded


def cut_entries(shapes: list[tuple]) -> list[dict]:
    """Bytes per sample at every cut, float32: before block 0 (the input) to after the last (the logits)."""
    return [{"before_block": i, "bytes_per_sample": 4 * int(np.prod(shape))} for i, shape in enumerate(shapes)]


def artifact_entries(out: Path, files: list[str]) -> dict:
    """The manifest's sha256 and size of every artifact file, which the servers check at load."""
    from strata.bundle import sha256

    return {"artifacts": {name: sha256((out / name).read_bytes()) for name in files},
            "artifact_bytes": {name: (out / name).stat().st_size for name in files}}


def write_manifest(manifest: dict, out: Path) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def executor_agreement(out: Path, manifest: dict, images: np.ndarray, torch_logits: np.ndarray) -> dict:
    """How closely the numpy browser executor reproduces torch's branch logits."""
    from strata.executor import load_browser_model

    name = manifest["browser_bundle"]["file"]
    model = load_browser_model(manifest, {name: (out / name).read_bytes()})
    logits = np.concatenate([model.branch_logits(model.conv1(images[i:i + 500])) for i in range(0, len(images), 500)])
    diff = np.abs(logits - torch_logits).max(axis=1)
    return {"images": len(images), "prediction_agreement": float((logits.argmax(1) == torch_logits.argmax(1)).mean()),
            "max_abs_logit_diff": float(diff.max()), "p999_abs_logit_diff": float(np.quantile(diff, 0.999)),
            "tolerance": LOGIT_TOLERANCE, "within_tolerance": float((diff <= LOGIT_TOLERANCE).mean())}


def write_onnx(module, input_shape: tuple, path: Path) -> None:
    """Export in eval mode with a dynamic batch dimension (legacy exporter, opset 17)."""
    import torch

    module.eval()  # the legacy exporter restores the training flag; a train-mode module would drift
    torch.onnx.export(module, torch.zeros(1, *input_shape), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=OPSET, dynamo=False)


def check_chain(out: Path, names: list[str], x: np.ndarray) -> float:
    """Max abs difference between the chained block files and the full graph; fails over tolerance."""
    full, chained = run_chain(out, ["full.onnx"], x), run_chain(out, names, x)
    diff = float(np.abs(full - chained).max())
    if diff > CHAIN_TOLERANCE:
        raise RuntimeError(f"chained blocks differ from the full graph by {diff} > {CHAIN_TOLERANCE}")
    return diff


def run_chain(out: Path, names: list[str], x: np.ndarray) -> np.ndarray:
    """The ONNX files `names` in `out`, chained in onnxruntime as the edge and cloud run them."""
    import onnxruntime as ort

    for name in names:
        x = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return x


def block_entry(index: int, block, file: str, in_shape: tuple, out_shape: tuple, out: Path) -> dict:
    """Manifest entry of one main-path block: shapes, bytes out, MACs, parameters, ops."""
    from training.fold import block_ops
    from training.model import Classifier

    if isinstance(block, Classifier):
        macs = block.fc.in_features * block.fc.out_features
        params = macs + block.fc.out_features
    else:
        shape = block.shape
        macs = in_shape[1] * in_shape[2] * shape.cin * shape.cout * 9
        params = shape.cin * shape.cout * 9 + shape.cout
    return {"index": index, "name": "conv1" if index == 0 else ("classifier" if isinstance(block, Classifier)
                                                                  else f"block{index}"),
            "file": file, "bytes": (out / file).stat().st_size,
            "input_shape": list(in_shape), "output_shape": list(out_shape),
            "output_bytes_per_sample": 4 * int(np.prod(out_shape)), "macs": macs, "params": params,
            "ops": block_ops(block)}

