"""`strata split`: cut points of chains, residual and branching graphs; pieces that chain back to the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from strata.cli import main

from edge_server.blocks.main_path import MainPath
from edge_server.split import SplitError
from edge_server.split.cut_points import choose_cuts, find_cut_points, split_model
from edge_server.split.prepare import prepare
from edge_server.split.write import write_split
from tests.exporter_kinds import Builder, chain_model


def residual_model(weights_as_inputs: bool = False):
    """stem, two residual blocks (Add skips), a split-and-join branch (Concat), a head; and its cut points.

    A Constant scale is read in the stem and in the head, so both pieces need their own copy.
    """
    b = Builder(1)
    scale = b.node("Constant", value=helper.make_tensor("scale", TensorProto.FLOAT, [], [0.5]))
    cuts = [b.conv("x", 3, 6)]
    cuts.append(b.node("Relu", cuts[-1]))
    cuts.append(b.node("Mul", cuts[-1], scale))
    for _ in range(2):
        inner = b.conv(b.node("Relu", b.conv(cuts[-1], 6, 6)), 6, 6)  # inside: the skip is live too
        cuts.append(b.node("Add", inner, cuts[-1]))
        cuts.append(b.node("Relu", cuts[-1]))
    left, right = b.conv(cuts[-1], 6, 3), b.node("Relu", b.conv(cuts[-1], 6, 3))  # inside: both are live
    cuts.append(b.node("Concat", left, right, axis=1))
    cuts.append(b.node("GlobalAveragePool", cuts[-1]))
    cuts.append(b.node("Flatten", cuts[-1]))
    cuts.append(b.node("Gemm", cuts[-1], b.weight(6, 4), b.weight(4)))
    out = b.node("Mul", cuts[-1], scale)
    return b.model(out, ["N", 3, 8, 8], ["N", 4], weights_as_inputs), cuts


def fixed_batch_model():
    """Batch 1 everywhere, and a Reshape to [1, -1] as batch-1 exporters write it."""
    b = Builder(2)
    t = b.node("Relu", b.conv("x", 3, 4))
    b.weights.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat"))
    t = b.node("Reshape", t, "flat")
    t = b.node("Gemm", t, b.weight(4 * 8 * 8, 3), b.weight(3))
    return b.model(t, [1, 3, 8, 8], [1, 3])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _chained(pieces: list[onnx.ModelProto], x: np.ndarray) -> np.ndarray:
    for piece in pieces:
        assert len(piece.graph.input) == 1 and len(piece.graph.output) == 1
        x = _run(piece, x)
    return x


def _x(batch: int, shape=(3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(batch, *shape)).astype(np.float32)


def test_every_node_boundary_of_a_chain_is_a_cut_point() -> None:
    model, tensors = chain_model()
    full = prepare(model)
    cuts = find_cut_points(full)
    assert cuts == tensors[:-1]  # all but the output
    pieces = split_model(full, cuts)
    assert [len(p.graph.node) for p in pieces] == [1] * 6
    assert np.abs(_chained(pieces, _x(2)) - _run(model, _x(2))).max() <= 1e-5


@pytest.mark.parametrize("weights_as_inputs", [False, True])
def test_residual_and_branch_interiors_are_not_cut_points(weights_as_inputs: bool) -> None:
    model, expected = residual_model(weights_as_inputs)
    full = prepare(model)
    assert [i.name for i in full.model.graph.input] == ["x"]
    cuts = find_cut_points(full)
    assert cuts == expected
    pieces = split_model(full, cuts)
    with_scale = [k for k, piece in enumerate(pieces) if any(n.op_type == "Constant" for n in piece.graph.node)]
    assert with_scale == [2, len(pieces) - 1]  # the two Muls by the shared Constant
    assert np.abs(_chained(pieces, _x(3)) - _run(model, _x(3))).max() <= 1e-5


def test_split_refuses_a_tensor_that_is_not_a_cut_point() -> None:
    model, _ = residual_model()
    with pytest.raises(SplitError, match="not a cut point"):
        split_model(prepare(model), ["t6"])  # inside the first residual block, whose skip also crosses


def test_cuts_balance_the_work() -> None:
    done = [0.1, 0.2, 0.3, 0.55, 0.6, 0.9]
    assert choose_cuts(list("abcdef"), done, [1] * 6, max_blocks=2) == ["d"]
    assert choose_cuts(list("abcdef"), done, [1] * 6, max_blocks=4) == ["c", "d", "f"]
    assert choose_cuts(list("ab"), [0.5, 0.5], [9, 1], max_blocks=2) == ["b"]  # tie: the smaller tensor
    assert choose_cuts(list("abc"), [0.1, 0.5, 0.9], [1] * 3, max_blocks=12) == ["a", "b", "c"]


def test_written_split_is_served_by_main_path(tmp_path: Path) -> None:
    model, expected = residual_model()
    source = tmp_path / "resnet.onnx"
    onnx.save(model, source)
    manifest = write_split(source, tmp_path / "out", None, max_blocks=4, all_cuts=False)
    assert manifest["name"] == "resnet" and manifest["source"]["valid_cut_points"] == len(expected)
    assert len(manifest["blocks"]) == 4 and manifest["full_graph"]["chain_max_abs_diff"] <= 1e-5
    assert manifest["cuts"][0]["bytes_per_sample"] == 4 * 3 * 8 * 8
    assert manifest["blocks"][0]["macs"] == 6 * 8 * 8 * 3 * 9 and manifest["blocks"][0]["ops"] is None
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest

    main_path = MainPath(tmp_path / "out")
    x = _x(2)
    assert np.abs(main_path.run(x, 0, len(main_path)) - _run(model, x)).max() <= 1e-5
    for k in range(len(main_path)):
        at_k = main_path.run(x, 0, k)
        assert np.abs(_run(main_path.suffix(k), at_k) - main_path.run(at_k, k, len(main_path))).max() <= 1e-5


def test_all_cuts_keeps_every_cut_point(tmp_path: Path) -> None:
    model, tensors = chain_model()
    onnx.save(model, tmp_path / "chain.onnx")
    manifest = write_split(tmp_path / "chain.onnx", tmp_path / "out", "c", max_blocks=2, all_cuts=True)
    assert [b["name"] for b in manifest["blocks"]] == tensors
    ops = [b["onnx_ops"] for b in manifest["blocks"]]
    assert ops == [[op] for op in ("Conv", "Relu", "Conv", "Relu", "Flatten", "Gemm")]


def test_fixed_batch_of_one_becomes_dynamic(tmp_path: Path) -> None:
    model = fixed_batch_model()
    onnx.save(model, tmp_path / "fixed.onnx")
    write_split(tmp_path / "fixed.onnx", tmp_path / "out", None, max_blocks=12, all_cuts=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    pieces = [onnx.load(tmp_path / "out" / b["file"]) for b in manifest["blocks"]]
    x = _x(3)
    per_sample = np.concatenate([_run(model, x[i:i + 1]) for i in range(3)])
    assert np.abs(_chained(pieces, x) - per_sample).max() <= 1e-5


def test_bad_inputs_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["split", str(tmp_path / "missing.onnx")]) == 1
    assert "missing.onnx does not exist" in capsys.readouterr().err
    (tmp_path / "text.onnx").write_text("not a model")
    assert main(["split", str(tmp_path / "text.onnx")]) == 1
    assert "is not an ONNX model" in capsys.readouterr().err

    model, _ = chain_model()
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 3, 8, 8]))
    onnx.save(model, tmp_path / "two.onnx")
    assert main(["split", str(tmp_path / "two.onnx"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "2 inputs (x, mask)" in err and "exactly one" in err and "one tensor per sample" in err


def test_command_prints_the_blocks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, _ = chain_model()
    onnx.save(model, tmp_path / "chain.onnx")
    assert main(["split", str(tmp_path / "chain.onnx"), "--out", str(tmp_path / "out"), "--max-blocks", "3"]) == 0
    out = capsys.readouterr().out
    assert "5 valid cut points, 3 blocks" in out and "3x8x8" in out and "max abs diff" in out
    assert len(MainPath(tmp_path / "out")) == 3
