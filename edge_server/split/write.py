"""Split a model, check the blocks against the user's file, and write them: block{k}.onnx,
full.onnx, manifest.json and, with pictures, samples.npz: the folder `strata serve` and
`strata cloud` serve (STRATA_MODELS_DIR).

Every input (the model, its weights file, --labels, --samples) is read and checked before
anything is written, and the folder is written whole or not at all: into a temporary
folder beside it, renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from strata.offload import INFER_HEADER_BYTES
from strata.preprocess import PictureRule

from edge_server.config import Settings
from edge_server.split import SplitError
from edge_server.split.contract import class_count, input_entry, output_entry, read_labels
from edge_server.split.cut_points import (
    CUT_RULE,
    MACS_NOTE,
    balanced_cuts,
    few_blocks_reason,
    find_cut_points,
    node_macs,
    params,
    split_model,
    walk,
)
from edge_server.split.prepare import Prepared, prepare
from edge_server.split.samples import SAMPLES_FILE, read_pictures, sample_inputs, samples_entry, samples_file
from edge_server.split.shapes import dtype_name, ort_session, sample_input
from edge_server.split.source import SourceRunner, load

MANIFEST_FORMAT = "strata-model-manifest"
# (rtol, atol) of the check, by what crosses the cuts (see tolerance()).
TOLERANCE = (1e-4, 1e-5)
HALF_TOLERANCE = (2 * float(np.finfo(np.float16).eps),) * 2
QUANTIZED_TOLERANCE = (1e-2, 1e-2)


@dataclass
class Split:
    """A split in memory: the files of its folder, its manifest, and what to tell the user."""

    files: dict[str, bytes]
    manifest: dict
    notes: list[str] = field(default_factory=list)


def tolerance(dtypes: list[str], batch_independent: bool) -> tuple[float, float]:
    """(rtol, atol) within which the chained blocks must match the source, given the dtypes at
    the cuts: float32 results of the same ops in another order or fusion agree to 1e-4; float16
    tensors are rounded at every cut, where onnxruntime computes inside one session in float32
    (it casts around float16 ops), so they agree to 2 ulp of float16 at 1.0 (about 2e-3);
    dynamically quantized ops run different int8 kernels per session (prepacked weights or
    not), which round differently: up to 1.6e-3 of the output's scale on tests' fixture."""
    if not batch_independent:
        return QUANTIZED_TOLERANCE
    return HALF_TOLERANCE if "float16" in dtypes else TOLERANCE


def _check(full: onnx.ModelProto, pieces: list[onnx.ModelProto], source: SourceRunner,
           rtol_atol: tuple[float, float]) -> tuple[dict, np.ndarray]:
    """Run the user's file, full.onnx and the chained blocks on a random batch of 2 (which also
    proves the batch is free); return the max abs differences and full.onnx's output."""
    x = sample_input(full, 2)
    try:
        expected = source.run(x)
        full_y = ort_session(full).run(None, {full.graph.input[0].name: x})[0]
        y = x
        for piece in pieces:
            y = ort_session(piece).run(None, {piece.graph.input[0].name: y})[0]
    except Exception as exc:  # onnxruntime raises its own types
        raise SplitError(f"onnxruntime cannot run the model or its blocks at batch 2 ({exc}); if a node hard-codes "
                         "batch 1 (e.g. a computed Reshape target), re-export the model with a dynamic batch") from exc
    expected, full_y, y = (a.astype(np.float64) for a in (expected, full_y, y))
    for reference, what in ((expected, "the source model"), (full_y, "full.onnx")):
        if reference.shape != y.shape or not np.allclose(y, reference, *rtol_atol):
            diff = np.abs(y - reference).max() if reference.shape == y.shape else f"shape {reference.shape}"
            raise SplitError(f"the chained blocks differ from {what} by up to {diff} (shape {y.shape}); this is "
                             "a bug in strata split: please report it with the model")
    return {"source": float(np.abs(expected - y).max()), "full": float(np.abs(full_y - y).max())}, full_y


def _cut_bytes(shape: list[int], dtype: str) -> int:
    """Bytes per sample of a cut tensor in its own dtype (what f32, f16 or the exact 8-bit path send)."""
    return math.prod(shape) * np.dtype(dtype).itemsize


def _block_entries(prepared: Prepared, pieces: list[onnx.ModelProto], ends: list[str],
                   files: dict[str, bytes]) -> list[dict]:
    shapes = prepared.shapes
    sample, known = shapes.servable(), {t: shape for t, (_, shape) in shapes.one.items() if shape}
    return [{
        "index": k,
        "name": ends[k + 1],
        "file": f"block{k}.onnx",
        "bytes": len(files[f"block{k}.onnx"]),
        "input_shape": sample[ends[k]],
        "output_shape": sample[ends[k + 1]],
        "input_dtype": dtype_name(shapes.dtype(ends[k])),
        "output_dtype": dtype_name(shapes.dtype(ends[k + 1])),
        "output_bytes_per_sample": _cut_bytes(sample[ends[k + 1]], dtype_name(shapes.dtype(ends[k + 1]))),
        "macs": sum(node_macs(node, known) for node in piece.graph.node),
        "params": params(piece),
        "ops": None,
        "onnx_ops": sorted({node.op_type for node in piece.graph.node}),
    } for k, piece in enumerate(pieces)]


def _cut_entries(prepared: Prepared, ends: list[str]) -> list[dict]:
    """The manifest's `cuts`: each block's input tensor, then the output: dtype and bytes per sample."""
    sample = prepared.shapes.servable()
    dtypes = {t: dtype_name(prepared.shapes.dtype(t)) for t in ends}
    return [{"before_block": k, "tensor": t, "dtype": dtypes[t], "bytes_per_sample": _cut_bytes(sample[t], dtypes[t])}
            for k, t in enumerate(ends)]


def attach_cut(full: onnx.ModelProto, after_convs: int = 1) -> str:
    """The tensor a branch attaches to: the last valid cut point before the model's
    (after_convs + 1)-th Conv (in the stored order), that is after its first `after_convs`
    convolutions and what follows them up to the next (batch norm, activation, pooling).
    SplitError if the model has no such cut point."""
    prepared = prepare(full)
    valid = set(find_cut_points(prepared))
    steps = walk(prepared.model.graph)
    convs = [i for i, node in enumerate(steps.order) if node.op_type == "Conv"]
    if len(convs) < after_convs:
        raise SplitError(f"the model has {len(convs)} convolutions, fewer than the {after_convs} to attach after")
    before = convs[after_convs] if len(convs) > after_convs else len(steps.order)
    after = convs[after_convs - 1] + 1
    found = [t for t, i in steps.single.items() if t in valid and after <= i <= before]
    if not found:
        raise SplitError(f"no tensor after the model's convolution {after_convs} and before the next can be cut "
                         "(a residual or branching stretch): choose the attach point with --after K")
    return max(found, key=lambda t: steps.single[t])


def cut_also_at(folder: Path, manifest: dict, tensor: str) -> tuple[dict[str, bytes], dict]:
    """A split folder's model (its full.onnx) cut also at `tensor`, in memory: the block files
    (all renumbered) and the manifest with its blocks, cuts and their artifacts replaced, the
    rest kept. Checked against full.onnx as `strata split` checks; SplitError if `tensor` is
    not a valid cut point of the model, or is a cut already."""
    path = Path(folder) / "full.onnx"
    full = onnx.load(path)
    prepared = prepare(full)
    cuts = [c["tensor"] for c in manifest["cuts"][1:-1]]
    if tensor in cuts:
        raise SplitError(f"{tensor!r} is already a cut of {folder}")
    order = walk(prepared.model.graph).single
    if tensor not in find_cut_points(prepared) or any(c not in order for c in cuts):
        raise SplitError(f"{tensor!r} is not a valid cut point of {path}")
    cuts = sorted([*cuts, tensor], key=order.__getitem__)
    pieces = split_model(prepared, cuts)
    ends = [prepared.model.graph.input[0].name, *cuts, prepared.model.graph.output[0].name]
    dtypes = [c["dtype"] for c in _cut_entries(prepared, ends)]
    _check(prepared.model, pieces, SourceRunner(path, full), tolerance(dtypes, manifest.get("batch_independent", True)))
    files = {f"block{k}.onnx": piece.SerializeToString() for k, piece in enumerate(pieces)}
    artifacts = {name: digest for name, digest in manifest["artifacts"].items() if not name.startswith("block")}
    artifacts.update({file: hashlib.sha256(data).hexdigest() for file, data in files.items()})
    changes = [*manifest["source"]["changes"], f"cut also at {tensor!r}, where a branch attaches (strata branch)"]
    return files, {**manifest, "blocks": _block_entries(prepared, pieces, ends, files), "cuts": _cut_entries(prepared, ends),
                   "source": {**manifest["source"], "changes": changes}, "artifacts": artifacts}


def _warnings(manifest: dict, prepared: Prepared, valid: list[str], max_blocks: int, all_cuts: bool) -> list[str]:
    """A cut too large for the edge's frame limit, and why there are fewer blocks than asked for."""
    notes = []
    limit = Settings().max_frame_bytes
    too_large = [c for c in manifest["cuts"][:-1] if c["bytes_per_sample"] + INFER_HEADER_BYTES > limit]
    if too_large:
        notes.append(f"warning: {len(too_large)} cut(s) carry more than the edge's frame limit of {limit:,} bytes "
                     f"per sample ({', '.join(repr(c['tensor']) for c in too_large)}): a plan sending one of "
                     "them needs a smaller codec, and the planner leaves out those that would not fit (raise the limit "
                     "with `strata serve --max-frame-bytes`)")
    if not all_cuts and len(manifest["blocks"]) < max_blocks:
        notes.append(f"{len(manifest['blocks'])} blocks, not {max_blocks}: {few_blocks_reason(prepared, valid)}")
    return notes


def make_split(model_path: Path, name: str | None = None, max_blocks: int = 12, all_cuts: bool = False, *,
               input_shape: tuple[int, ...] | None = None, rule: PictureRule | None = None,
               labels_file: Path | None = None, pictures: list[Path] | None = None) -> Split:
    """Split the model at balanced (or all) cut points, in memory; see write_split."""
    model_path = Path(model_path)
    if max_blocks < 1:
        raise SplitError(f"--max-blocks must be at least 1, not {max_blocks}")
    source_model, source_bytes = load(model_path)
    labels = read_labels(labels_file) if labels_file else None
    decoded = read_pictures(pictures) if pictures else []
    prepared = prepare(source_model, input_shape)
    valid = find_cut_points(prepared)
    chosen = valid if all_cuts else balanced_cuts(prepared, valid, max_blocks)
    pieces = split_model(prepared, chosen)
    full, shapes = prepared.model, prepared.shapes
    ends = [full.graph.input[0].name, *chosen, full.graph.output[0].name]
    dtypes = {t: dtype_name(shapes.dtype(t)) for t in ends}
    diffs, full_y = _check(full, pieces, SourceRunner(model_path, source_model, prepared.output_batch_axis),
                           tolerance(list(dtypes.values()), prepared.batch_independent))
    model_input = input_entry(prepared, rule or PictureRule(), rule is not None)
    model_output, classes = output_entry(prepared, source_model, full_y, labels)

    files = {f"block{k}.onnx": piece.SerializeToString() for k, piece in enumerate(pieces)}
    files["full.onnx"] = full.SerializeToString()
    if decoded:
        if "preprocess" not in model_input:
            raise SplitError(f"--samples: the model's input {model_input['shape']} is not a picture (an NCHW or "
                             "NHWC input with 1 or 3 channels)")
        inputs = sample_inputs(decoded, model_input)
        is_classifier = class_count(model_output["shape"]) is not None
        argmax = (ort_session(full).run(None, {ends[0]: inputs})[0].reshape(len(inputs), -1).argmax(axis=1)
                  .astype(np.int64) if is_classifier else None)
        files[SAMPLES_FILE] = samples_file(inputs, argmax)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "name": name or model_path.stem,
        "model_id": hashlib.sha256(source_bytes).hexdigest()[:16],
        **({"classes": classes} if classes else {}),
        "batch_independent": prepared.batch_independent,
        "source": {"file": model_path.name, "bytes": len(source_bytes), "valid_cut_points": len(valid),
                   "rule": "every valid cut point" if all_cuts else CUT_RULE, "changes": prepared.notes,
                   "chain_max_abs_diff": diffs["source"]},
        "input": model_input,
        "output": model_output,
        "blocks": _block_entries(prepared, pieces, ends, files),
        "macs_note": MACS_NOTE,
        "cuts": _cut_entries(prepared, ends),
        "full_graph": {"file": "full.onnx", "bytes": len(files["full.onnx"]), "input": ends[0], "output": ends[-1],
                       "chain_max_abs_diff": diffs["full"]},
    }
    if decoded:
        manifest["samples"] = samples_entry(pictures, files[SAMPLES_FILE], is_classifier)
    manifest["artifacts"] = {file: hashlib.sha256(data).hexdigest() for file, data in files.items()}
    return Split(files, manifest, [*prepared.notes, *_warnings(manifest, prepared, valid, max_blocks, all_cuts)])


def _replaceable(out_dir: Path) -> bool:
    """An output folder split may replace: absent, empty, or an earlier split's."""
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    try:
        return json.loads((out_dir / "manifest.json").read_text()).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return not any(out_dir.iterdir())


def write_folder(out_dir: Path, files: dict[str, bytes], manifest: dict, *, keep_others: bool = False,
                 verify: Callable[[Path], None] | None = None) -> None:
    """Write the files and manifest.json into out_dir whole or not at all: into a temporary
    folder beside it, then renamed into place (an earlier split there is replaced).
    `keep_others`: the temporary folder starts as a copy of out_dir, so files not given stay
    (`strata branch` adds to a folder). `verify(folder)` may check the temporary folder
    before it moves in, raising to keep out_dir as it was."""
    out_dir = Path(out_dir).absolute()
    if not _replaceable(out_dir):
        raise SplitError(f"{out_dir} exists and is not a folder strata split wrote; choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if keep_others and out_dir.exists():
            shutil.copytree(out_dir, staging, dirs_exist_ok=True)
        for file, data in {**files, "manifest.json": (json.dumps(manifest, indent=1) + "\n").encode()}.items():
            (staging / file).write_bytes(data)
        if verify is not None:
            verify(staging)
        if out_dir.exists():
            old = out_dir.with_name(f"{staging.name}.old")
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_split(model_path: Path, out_dir: Path, name: str | None = None, max_blocks: int = 12,
                all_cuts: bool = False, **options) -> dict:
    """Split the model at balanced (or all) cut points and write the folder (see the module
    docstring); return the manifest. Raises SplitError, naming the cause and what to do, for
    a model it cannot split or an input it cannot use; nothing is written then.

    options: input_shape (per-sample, for dynamic dimensions), rule (a PictureRule, the
    --samples options), labels_file, pictures (paths for samples.npz); see make_split.
    """
    split = make_split(model_path, name, max_blocks, all_cuts, **options)
    write_folder(out_dir, split.files, split.manifest)
    return split.manifest
