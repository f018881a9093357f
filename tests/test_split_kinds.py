"""`strata split` on each kind of graph exporters really produce (tests/exporter_kinds.py): it
splits, or refuses naming the cause, and the chained blocks match the user's own file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from strata.cli import main

from edge_server.split import SplitError
from edge_server.split.write import make_split, tolerance, write_split
from tests import exporter_kinds as kinds

# kind: (builder, split options, valid cut points: the chain positions where one tensor crosses)
SPLITS = {
    "flatten-by-shape-opset11": (kinds.flatten_by_shape, {}, 7),  # conv, relu x2, then after the Reshape
    "flatten-by-shape-opset13": (lambda: kinds.flatten_by_shape(13), {}, 7),
    "pad-from-constants": (kinds.pad_from_constants, {}, 7),
    "batch-minus-one": (lambda: kinds.dynamic_dims(-1, [8, 8]), {}, 6),
    "batch-zero": (lambda: kinds.dynamic_dims(0, [8, 8]), {}, 6),
    "batch-question-mark": (lambda: kinds.dynamic_dims("?", [8, 8]), {}, 6),
    "batch-named": (lambda: kinds.dynamic_dims("batch_size", [8, 8]), {}, 6),
    "paddle-dynamic-height-width": (lambda: kinds.dynamic_dims(-1, ["?", "?"]), {"input_shape": (3, 8, 8)}, 6),
    "batch-from-input": (kinds.batch_from_input, {}, 13),  # stem, after each of 3 residual Adds, the head
    "tf2onnx-ir3-weights-as-inputs": (kinds.tf2onnx_ir3, {}, 8),
    "constant-node-weights": (kinds.constant_node_weights, {}, 6),
    "if-reads-outer-tensors": (kinds.if_reads_outer, {}, 6),
    "loop-reads-outer-tensors": (kinds.loop_reads_outer, {}, 6),
    "com.microsoft-DynamicQuantizeLSTM": (lambda: kinds.crnn(quantized=True), {}, 5),
    "qdq": (kinds.qdq, {}, 7),  # every QuantizeLinear output that stands alone
    "uint8-nhwc": (kinds.uint8_nhwc, {}, 9),
    "fp16": (kinds.fp16, {}, 6),
    "time-major-output": (lambda: kinds.crnn(quantized=False), {}, 5),
    "softmax-classifier": (lambda: kinds.classifier_ending_in("Identity", "Softmax"), {}, 8),
    "detector-neck": (kinds.detector_neck, {}, 4),  # the stem only: the neck's branches join at the output
}


def _reference(source: Path, x: np.ndarray, batch_axis: int) -> np.ndarray:
    """The user's file in onnxruntime: the whole batch at once, or one sample at a time if it
    fixes the batch at 1. A dimension declared 0, which onnxruntime takes literally, is
    made symbolic first."""
    model = onnx.load(source)
    for dim in model.graph.input[0].type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value <= 0:
            dim.dim_param = "free"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    outputs = [session.run(None, {name: part})[0] for part in (np.split(x, len(x)) if batch == 1 else [x])]
    return np.moveaxis(np.concatenate(outputs, axis=batch_axis), batch_axis, 0)


def _chained(folder: Path, manifest: dict, x: np.ndarray) -> np.ndarray:
    for block in manifest["blocks"]:
        session = ort.InferenceSession(str(folder / block["file"]), providers=["CPUExecutionProvider"])
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x


def _batch(manifest: dict, batch: int = 3) -> np.ndarray:
    shape, dtype = [batch, *manifest["input"]["shape"]], np.dtype(manifest["input"]["dtype"])
    rng = np.random.default_rng(11)
    return rng.integers(0, 256, shape).astype(dtype) if dtype == np.uint8 else rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("kind", list(SPLITS))
def test_each_kind_splits_at_every_cut_and_matches_the_source(tmp_path: Path, kind: str) -> None:
    build, options, cut_points = SPLITS[kind]
    source = tmp_path / "source.onnx"
    onnx.save(build(), source)
    manifest = write_split(source, tmp_path / "out", kind, all_cuts=True, **options)
    assert manifest["source"]["valid_cut_points"] == cut_points == len(manifest["blocks"]) - 1
    x = _batch(manifest)
    y, expected = _chained(tmp_path / "out", manifest, x), _reference(source, x, manifest["output"]["batch_axis_in_source"])
    assert y.shape == expected.shape
    rtol, atol = tolerance([b["input_dtype"] for b in manifest["blocks"]], manifest["batch_independent"])
    assert np.allclose(y, expected, rtol, atol), np.abs(y - expected).max()
    assert manifest["batch_independent"] == (kind != "com.microsoft-DynamicQuantizeLSTM")


def test_the_manifest_records_what_was_changed_and_the_real_dtypes(tmp_path: Path) -> None:
    splits = {}
    for kind in ("flatten-by-shape-opset11", "pad-from-constants", "batch-from-input", "qdq", "uint8-nhwc",
                 "time-major-output", "com.microsoft-DynamicQuantizeLSTM"):
        build, options, _ = SPLITS[kind]
        onnx.save(build(), tmp_path / f"{kind}.onnx")
        splits[kind] = make_split(tmp_path / f"{kind}.onnx", kind, all_cuts=True, **options)
    changes = {kind: " ".join(split.manifest["source"]["changes"]) for kind, split in splits.items()}
    assert "converted opset 11 to 14" in changes["flatten-by-shape-opset11"]
    assert "folded 1 constant-only" in changes["pad-from-constants"]
    assert "Reshape(s) hard-coding the batch 1 now copy the batch" in changes["batch-from-input"]
    assert "from onnxruntime runs" in changes["com.microsoft-DynamicQuantizeLSTM"]
    time_major = splits["time-major-output"].manifest
    assert "time-major" in changes["time-major-output"] and time_major["output"]["shape"] == [16, 5]
    assert time_major["output"]["batch_axis_in_source"] == 1
    cuts = splits["qdq"].manifest["cuts"]
    assert {c["dtype"] for c in cuts[1:-1]} in ({"int8"}, {"uint8"}) and len(cuts) == 9  # quantized: 1 byte each
    assert all(c["tensor"].endswith("QuantizeLinear_Output") for c in cuts[1:-1])
    pixels = splits["uint8-nhwc"].manifest
    assert pixels["input"]["dtype"] == "uint8" and pixels["input"]["layout"] == "NHWC"
    assert pixels["cuts"][0]["bytes_per_sample"] == 8 * 8 * 3 and pixels["blocks"][0]["input_dtype"] == "uint8"


def test_if_and_loop_keep_the_outer_tensors_they_read_live() -> None:
    from edge_server.split.cut_points import find_cut_points
    from edge_server.split.prepare import prepare

    for model in (kinds.if_reads_outer(), kinds.loop_reads_outer()):
        node = next(n for n in model.graph.node if n.op_type in ("If", "Loop"))
        cuts = find_cut_points(prepare(model))
        # t2 (relu) and t3 (conv of it) are both read inside the subgraph: after t3 both are live
        assert "t2" in cuts and "t3" not in cuts and node.output[0] in cuts


def test_dynamic_height_and_width_ask_for_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx.save(kinds.dynamic_dims(-1, ["?", "?"]), tmp_path / "paddle.onnx")
    assert main(["split", str(tmp_path / "paddle.onnx"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "[-1, 3, '?', '?']" in err and "--input-shape 3,H,W" in err and "('?', '?')" in err
    assert not (tmp_path / "out").exists()
    onnx.save(kinds.dynamic_dims("batch", ["height", "width"]), tmp_path / "named.onnx")
    assert main(["split", str(tmp_path / "named.onnx"), "--out", str(tmp_path / "out")]) == 1
    assert "--input-shape 3,height,width" in capsys.readouterr().err
    assert main(["split", str(tmp_path / "named.onnx"), "--out", str(tmp_path / "out"), "--input-shape", "3,8,8"]) == 0
    assert main(["split", str(tmp_path / "named.onnx"), "--out", str(tmp_path / "o2"), "--input-shape", "1,8,8"]) == 1
    assert "dimension 1 is fixed at 3" in capsys.readouterr().err


def test_external_weights_are_found_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "models").mkdir()
    onnx.save(kinds.chain_model()[0], tmp_path / "models" / "model.onnx", save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["split", os.path.join("..", "models", "model.onnx"), "--out", "out"]) == 0
    assert "5 valid cut points" in capsys.readouterr().out
    (tmp_path / "models" / "model.onnx.data").unlink()
    assert main(["split", os.path.join("..", "models", "model.onnx"), "--out", "out2"]) == 1
    err = capsys.readouterr().err
    assert "the weights file model.onnx.data next to the model is missing" in err and "not an ONNX model" not in err


def _fixed_batch_of_eight(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8


def _class_index_output(model: onnx.ModelProto) -> None:
    model.graph.node.append(helper.make_node("ArgMax", ["t6"], ["label"], axis=1))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 1]))


@pytest.mark.parametrize("change, message", [
    (_fixed_batch_of_eight, "a fixed batch of 8"),
    (_class_index_output, "the output 'label' is INT64"),
])
def test_graphs_split_cannot_serve_are_refused_with_the_cause(tmp_path: Path, change, message: str) -> None:
    model = kinds.chain_model()[0]
    change(model)
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(SplitError, match=message):
        make_split(tmp_path / "model.onnx")


def test_a_batch_hard_coded_in_a_computed_target_names_the_node(tmp_path: Path) -> None:
    b = kinds.Builder()
    t = b.node("Relu", b.conv("x", 3, 4))
    target = b.node("Concat", b.const([1]), b.node("Slice", b.node("Shape", t), b.const([1]), b.const([2])),
                    b.const([-1]), axis=0)  # [1, C, -1], computed, the 1 written by hand
    model = b.model(b.node("Reshape", t, target), ["N", 3, 8, 8], ["N", 4, 64])
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(SplitError, match=r"node 't6' \(Reshape\) is the first whose output does not follow the batch"):
        make_split(tmp_path / "model.onnx")


def test_no_block_computes_nothing(tmp_path: Path) -> None:
    onnx.save(kinds.classifier_ending_in("Identity", "Softmax"), tmp_path / "model.onnx")
    for blocks in (2, 3, 5, 8):
        manifest = write_split(tmp_path / "model.onnx", tmp_path / "out", max_blocks=blocks)
        assert all(block["macs"] > 0 for block in manifest["blocks"]), [b["onnx_ops"] for b in manifest["blocks"]]
        assert manifest["blocks"][-1]["onnx_ops"][-1] != "Softmax" or "Gemm" in manifest["blocks"][-1]["onnx_ops"]


def test_a_detector_says_in_one_line_why_it_has_few_blocks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx.save(kinds.detector_neck(), tmp_path / "detector.onnx")
    assert main(["split", str(tmp_path / "detector.onnx"), "--out", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "blocks, not 12" in line]
    assert len(lines) == 1 and "tensors are live at once" in lines[0] and "multi-scale neck" in lines[0]


def test_a_cut_larger_than_the_edges_frame_limit_is_warned_about(tmp_path: Path) -> None:
    b = kinds.Builder()
    wide = b.node("Relu", b.node("Conv", "x", b.weight(40, 3, 1, 1)))  # 40 x 256 x 256 float32: 10 MiB
    model = b.model(b.head(wide, 40), ["N", 3, 256, 256])
    onnx.save(model, tmp_path / "wide.onnx")
    notes = make_split(tmp_path / "wide.onnx", all_cuts=True).notes
    assert any("more than the edge's frame limit of 8,388,608 bytes" in note and "'t1'" in note for note in notes)
    onnx.save(kinds.chain_model()[0], tmp_path / "small.onnx")
    assert not any("frame limit" in note for note in make_split(tmp_path / "small.onnx").notes)


def test_the_printed_check_is_against_the_source_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx.save(kinds.batch_from_input(), tmp_path / "resnet.onnx")  # full.onnx differs: its Reshape copies the batch
    assert main(["split", str(tmp_path / "resnet.onnx"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "chained blocks vs resnet.onnx: max abs diff" in out and "vs full.onnx" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["chain_max_abs_diff"] <= 1e-4


def test_a_shape_nobody_can_know_names_the_node_that_lost_it(tmp_path: Path) -> None:
    b = kinds.Builder()
    t = b.node("Gelu", b.node("Relu", b.conv("x", 3, 4)), domain="com.microsoft")  # no shape inference for it
    t = b.node("Reshape", t, b.const([1, 256]))  # a batch of 1 written by hand: onnxruntime fails at batch 2
    model = b.model(b.node("Gemm", t, b.weight(256, 5)), ["N", 3, 8, 8])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(SplitError, match=r"lost the shapes from node 't3' \(Gelu\) on, and onnxruntime could not "
                                         r"supply them \(at batch 2: .*Reshape"):
        make_split(tmp_path / "model.onnx")
