"""What a split model's input and output mean, as its manifest says them to the page and to
any client: the input (shape, layout, dtype, and how a picture becomes it: a
strata.preprocess.PictureRule from the --samples options), the output's kind (logits,
probabilities or another tensor, so that nobody applies softmax twice) and the class labels
(from --labels, or from the labels an exporter left in the model's metadata_props).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
from strata.preprocess import InputError, PictureRule, picture_geometry

from edge_server.split import SplitError
from edge_server.split.prepare import Prepared
from edge_server.split.shapes import dtype_name

# metadata_props keys under which exporters leave class labels: a generic name, ultralytics'
# `names` (a dict literal), PaddlePaddle's `character` (one per line).
LABEL_KEYS = ("labels", "classes", "names", "character")
PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Dropout", "Transpose"}
NORMALIZING = {"Softmax": "probabilities", "Sigmoid": "probabilities", "LogSoftmax": "logits"}
SUM_TOLERANCE = 1e-3  # rows of a probability output sum to 1 within this (float32 rounding)


def layout(shape: list[int]) -> str | None:
    """Guess for an image input (per-sample shape): NHWC if it ends, and does not start, with 1, 3 or 4 channels."""
    if len(shape) != 3:
        return None
    return "NHWC" if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4) else "NCHW"


def input_entry(prepared: Prepared, rule: PictureRule, rule_given: bool) -> dict:
    """The manifest's `input`: name, per-sample shape, layout, dtype, and for a picture input the
    rule turning a picture into it (`preprocess`; `given` False when the defaults were assumed)."""
    name = prepared.model.graph.input[0].name
    shape = prepared.shapes.servable()[name]
    entry = {"name": name, "shape": shape, "layout": layout(shape), "dtype": dtype_name(prepared.shapes.dtype(name))}
    try:
        channels = picture_geometry(entry)[2]
    except InputError as exc:
        if rule_given:
            raise SplitError(f"the picture options do not apply: {exc}") from None
        return entry
    try:
        rule.check(channels)
    except InputError as exc:  # its message starts with the option's name
        raise SplitError("--" + str(exc).replace("_", "-", 1)) from None
    if entry["dtype"] == "uint8" and (rule.mean, rule.std, rule.scale) != (PictureRule.mean, PictureRule.std,
                                                                          PictureRule.scale):
        raise SplitError("the model takes uint8 pixels and normalizes them itself: --mean, --std and --scale "
                         "do not apply to it")
    return {**entry, "preprocess": {**rule.to_manifest(), "given": rule_given}}


def class_count(shape: list[int]) -> int | None:
    """The number of classes if a per-sample output shape is one score per class ([C], [C, 1, 1]...)."""
    sizes = [d for d in shape if d != 1]
    return sizes[0] if len(sizes) == 1 and sizes[0] >= 2 else None


def _final_op(graph: onnx.GraphProto) -> str | None:
    """The op that computes the output, looking through ops that only move or copy values."""
    producer = {o: node for node in graph.node for o in node.output}
    node = producer.get(graph.output[0].name)
    while node is not None and node.op_type in PASS_THROUGH:
        node = producer.get(node.input[0])
    return None if node is None else node.op_type


def read_labels(path: Path) -> list[str]:
    """One label per non-empty line of a text file; SplitError if it cannot be read."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"--labels {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    return [line.strip() for line in lines if line.strip()]


def _parse_labels(text: str) -> list[str]:
    """Labels from a metadata value: a JSON or Python list, a {0: name, ...} dict, or one per line."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict) and sorted(map(str, value)) == sorted(map(str, range(len(value)))):
        by_index = {int(k): v for k, v in value.items()}
        return [str(by_index[i]) for i in range(len(value))]
    return [line.strip() for line in text.splitlines() if line.strip()]


def output_entry(prepared: Prepared, source: onnx.ModelProto, y: np.ndarray,
                 labels: list[str] | None) -> tuple[dict, list[str] | None]:
    """The manifest's `output` (name, per-sample shape, dtype, kind, activation, where the
    labels came from) and the class labels, if known. y: the full model's output on a batch,
    to tell probabilities by their sums. Raises SplitError if --labels does not fit."""
    graph = prepared.model.graph
    name = graph.output[0].name
    shape = prepared.shapes.servable()[name]
    count, final = class_count(shape), _final_op(graph)
    rows = y.reshape(len(y), -1).astype(np.float64)
    sums_to_one = bool(rows.size and (rows >= 0).all() and np.allclose(rows.sum(axis=1), 1, atol=SUM_TOLERANCE))
    kind = ("tensor" if count is None else NORMALIZING.get(final) or ("probabilities" if sums_to_one else "logits"))
    entry = {"name": name, "shape": shape, "dtype": dtype_name(prepared.shapes.dtype(name)), "kind": kind,
             "activation": final if final in NORMALIZING else None, "batch_axis_in_source": prepared.output_batch_axis,
             "labels_from": None}
    if labels is not None:
        if count is None or len(labels) != count:
            scores = "no per-class scores" if count is None else f"{count} classes"
            raise SplitError(f"--labels gives {len(labels)} labels, but the output {shape} has {scores}")
        entry["labels_from"] = "--labels"
        return entry, labels
    metadata = {p.key: p.value for p in source.metadata_props}
    for key in LABEL_KEYS:
        found = _parse_labels(metadata[key]) if key in metadata else []
        if count is not None and len(found) == count:
            entry["labels_from"] = f"metadata_props[{key!r}]"
            return entry, found
    return entry, None
