"""The Open Inference Protocol (KServe v2) REST body format, for the cloud and its clients.

An infer request or response is a JSON document, optionally followed by raw tensor
bytes (the binary tensor data extension): the header `Inference-Header-Content-Length`
gives the JSON's length, and each binary tensor names its size in
`parameters.binary_data_size`, in order. Triton, KServe and tritonclient speak exactly
this, so either side can be swapped for theirs.
"""

from __future__ import annotations

import json
import math

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "BOOL": np.bool_,
}
NAMES = {np.dtype(dtype): name for name, dtype in DATATYPES.items()}


class ProtocolError(ValueError):
    """A request or response that does not follow the protocol; the text says where."""


def datatype_of(array: np.ndarray) -> str:
    try:
        return NAMES[array.dtype]
    except KeyError:
        raise ProtocolError(f"dtype {array.dtype} has no Open Inference Protocol datatype") from None


def _tensor(spec: dict, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise ProtocolError("every tensor needs a string 'name'")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(f"tensor {name!r}: 'shape' must be a list of non-negative integers, got {shape!r:.200}")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(f"tensor {name!r}: datatype {datatype!r:.100} is not one of {', '.join(DATATYPES)}")
    dtype = np.dtype(DATATYPES[datatype])
    count = math.prod(shape)
    parameters = _object(spec, "parameters", f"tensor {name!r}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize or offset + size > len(binary):
            raise ProtocolError(f"tensor {name!r}: binary_data_size {size!r:.100} does not fit shape {shape} of "
                                f"{datatype} or the {len(binary) - offset} bytes left in the body")
        array = np.frombuffer(binary[offset:offset + size], dtype)
        return _shaped(array, shape, name), offset + size
    if "data" not in spec:
        raise ProtocolError(f"tensor {name!r} has neither 'data' nor parameters.binary_data_size")
    try:
        array = np.asarray(spec["data"])
    except ValueError as exc:  # ragged nesting
        raise ProtocolError(f"tensor {name!r}: 'data' does not fit shape {shape} of {datatype}: {exc}") from None
    if array.dtype.kind not in _JSON_KINDS.get(dtype.kind, "") or array.size != count:
        raise ProtocolError(f"tensor {name!r}: 'data' does not fit shape {shape} of {datatype}: it must hold "
                            f"{count} {_JSON_VALUES.get(dtype.kind, 'values')}; got {array.size} of {array.dtype}")
    return _shaped(array.astype(dtype), shape, name), offset


# The JSON values that may stand for each kind of datatype: numbers for numbers (integers
# for integer types), true/false for BOOL; strings never do (the spec is strict).
_JSON_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}
_JSON_VALUES = {"f": "numbers", "i": "integers", "u": "integers", "b": "booleans"}  # for messages


def _shaped(array: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # more dimensions than numpy holds
        raise ProtocolError(f"tensor {name!r}: shape {shape!r:.100} cannot be used: {exc}") from None


def _object(document: dict, key: str, where: str) -> dict:
    """document[key] if it is an object, {} if absent or null; ProtocolError otherwise."""
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: '{key}' must be an object, got {value!r:.100}")
    return value


def parse_body(body: bytes, header_length: str | None, key: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a request (key="inputs") or response (key="outputs") into JSON and tensors.
    ProtocolError names the field that breaks the protocol: a type, a shape, a size, or a
    name used twice."""
    try:
        length = len(body) if header_length is None else int(header_length)
        if not 0 <= length <= len(body):
            raise ValueError(f"{length} is outside the body's {len(body)} bytes")
        document = json.loads(body[:length])
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ProtocolError(f"the JSON part is invalid ({reason}); send JSON, or set {HEADER_LENGTH} "
                            "to the JSON's length when binary tensor data follows") from None
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise ProtocolError(f"the JSON part must be an object with a list '{key}'")
    if not isinstance(document.get("id", ""), str):
        raise ProtocolError(f"'id' must be a string, got {document['id']!r:.100}")
    _object(document, "parameters", "the body")
    binary, offset, tensors = memoryview(body)[length:], 0, {}
    for spec in document[key]:
        if not isinstance(spec, dict):
            raise ProtocolError(f"each entry of '{key}' must be an object")
        array, offset = _tensor(spec, binary, offset)
        if spec["name"] in tensors:
            raise ProtocolError(f"two entries of '{key}' are named {spec['name']!r}")
        tensors[spec["name"]] = array
    return document, tensors


def requested_outputs(document: dict) -> dict[str, dict]:
    """A request's 'outputs': {name: parameters} of each output it asks for ({} if it
    names none, which asks for all). ProtocolError if the field is malformed."""
    outputs = document.get("outputs")
    if outputs is None:
        return {}
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise ProtocolError(f"'outputs' must be a list of objects with a string 'name', got {outputs!r:.100}")
    requested = {}
    for output in outputs:
        if output["name"] in requested:
            raise ProtocolError(f"two entries of 'outputs' are named {output['name']!r}")
        requested[output["name"]] = _object(output, "parameters", f"output {output['name']!r}")
    return requested


def build_body(document: dict, key: str, tensors: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    """The inverse of parse_body: JSON plus, if binary, raw tensor bytes; returns (body, headers)."""
    specs, blobs = [], []
    for name, array in tensors.items():
        spec = {"name": name, "shape": list(array.shape), "datatype": datatype_of(array)}
        if binary:
            blob = np.ascontiguousarray(array).tobytes()
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            spec["data"] = array.reshape(-1).tolist()
        specs.append(spec)
    head = json.dumps({**document, key: specs}, separators=(",", ":")).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return b"".join([head, *blobs]), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
