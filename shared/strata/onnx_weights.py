"""Read the weights (initializers) out of an ONNX file with numpy alone.

Pyodide has no onnx or protobuf package, yet the device should be able to run any main
path block the planner gives it, from the very ONNX files the edge runs. ONNX is a
protobuf message, and the few fields needed here (ModelProto.graph, GraphProto.
initializer, TensorProto dims/data_type/name/raw_data) decode in a page of Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# ONNX TensorProto.DataType -> numpy dtype (the types the exporter writes for these models)
DTYPES = {1: np.dtype("<f4"), 6: np.dtype("<i4"), 7: np.dtype("<i8"), 10: np.dtype("<f2"), 11: np.dtype("<f8")}
MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5
TENSOR_DIMS, TENSOR_TYPE, TENSOR_FLOATS, TENSOR_NAME, TENSOR_RAW = 1, 2, 4, 8, 9


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}: not an ONNX file?")
        yield field, wire, value


def _tensor(data: memoryview) -> tuple[str, np.ndarray]:
    dims, dtype, name, raw = [], None, "", None
    for field, wire, value in _fields(data):
        if field == TENSOR_DIMS:
            if wire == 0:
                dims.append(value)
            else:  # packed
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    dims.append(dim)
        elif field == TENSOR_TYPE:
            dtype = DTYPES.get(value)
            if dtype is None:
                raise ValueError(f"unsupported ONNX tensor data type {value}")
        elif field == TENSOR_NAME:
            name = bytes(value).decode()
        elif field in (TENSOR_RAW, TENSOR_FLOATS):
            raw = value
    if raw is None or dtype is None:
        raise ValueError(f"initializer {name!r} has no inline data (external data is not supported)")
    return name, np.frombuffer(bytes(raw), dtype).reshape(dims)


def read_initializers(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """All initializers of an ONNX model, by name, as numpy arrays."""
    data = memoryview(onnx_bytes)
    graph = next((value for field, _, value in _fields(data) if field == MODEL_GRAPH), None)
    if graph is None:
        raise ValueError("no graph found: not an ONNX model file")
    return dict(_tensor(value) for field, _, value in _fields(graph) if field == GRAPH_INITIALIZER)
