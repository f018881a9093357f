"""Chained block graphs compute exactly what running the blocks one after another does."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edge_server.blocks.graphs import INPUT, OUTPUT, chain
from tests.onnx_models import conv_block


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_chain_equals_blocks_run_in_turn() -> None:
    blocks = [conv_block(0, 3, 4), conv_block(1, 4, 5), conv_block(2, 5, 2)]
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    expected = x
    for block in blocks:
        expected = _run(block, expected)
    joined = chain(blocks)
    assert [i.name for i in joined.graph.input] == [INPUT]
    assert [o.name for o in joined.graph.output] == [OUTPUT]
    assert np.abs(_run(joined, x) - expected).max() <= 1e-5


def test_chain_of_one_renames_only() -> None:
    block = conv_block(0, 3, 4)
    x = np.ones((1, 3, 8, 8), np.float32)
    assert np.array_equal(_run(chain([block]), x), _run(block, x))


def test_chain_refuses_nothing_to_chain() -> None:
    with pytest.raises(ValueError, match="at least one"):
        chain([])
