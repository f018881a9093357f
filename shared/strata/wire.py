"""The one wire format between the browser worker and the edge, used by both sides.

A frame is a fixed 8-byte preamble, a small JSON header and a raw payload:

    offset 0  b"ST"               magic
    offset 2  u8  version         WIRE_VERSION
    offset 3  u8  message type    MessageType
    offset 4  u32 header length   little-endian, bytes of UTF-8 JSON
    offset 8  header              a JSON object
    offset 8+h payload            raw bytes (a tensor, or probe filler)

JSON keeps the header readable and easy to extend; the payload stays binary so that
tensors cross without base64 or copies. docs/protocol.md is the full specification.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

MAGIC = b"ST"
WIRE_VERSION = 1
PREAMBLE = struct.Struct("<2sBBI")
MAX_HEADER_BYTES = 64 * 1024
# Headers nest 3 or 4 levels deep. Python's JSON parser recurses per level: in Pyodide,
# a few thousand levels overflow the JavaScript stack and kill the runtime before
# Python's recursion limit is reached, so depth is checked before parsing.
MAX_HEADER_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class MessageType(IntEnum):
    HELLO = 1
    INFER = 2
    RESULT = 3
    ERROR = 4
    PING = 5
    PONG = 6


class WireError(ValueError):
    """A frame that cannot be decoded. `code` is machine-readable, the text is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Frame:
    type: MessageType
    header: dict = field(default_factory=dict)
    payload: bytes = b""


def encode(frame: Frame) -> bytes:
    """Serialize a frame. The header must be JSON: NaN and Infinity raise ValueError
    rather than go out as the non-standard tokens other JSON parsers refuse."""
    header = json.dumps(frame.header, separators=(",", ":"), allow_nan=False).encode()
    preamble = PREAMBLE.pack(MAGIC, WIRE_VERSION, int(frame.type), len(header))
    return b"".join((preamble, header, bytes(frame.payload)))


def decode(data: bytes | bytearray | memoryview, max_size: int | None = None) -> Frame:
    """Parse one frame, or raise WireError saying exactly what is wrong with it. The
    header must be strict JSON: NaN, Infinity and numbers beyond a double's range are
    refused, and so is nesting deeper than MAX_HEADER_DEPTH."""
    data = bytes(data)
    if max_size is not None and len(data) > max_size:
        raise WireError("too-large", f"frame of {len(data)} bytes exceeds the limit of {max_size} bytes")
    if len(data) < PREAMBLE.size:
        raise WireError("malformed", f"frame of {len(data)} bytes is shorter than the {PREAMBLE.size}-byte preamble")
    magic, version, kind, header_len = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise WireError("malformed", f"frame starts with {magic!r}, expected the magic {MAGIC!r}")
    if version != WIRE_VERSION:
        raise WireError("unsupported-version", f"wire version {version} is not supported; this side speaks version {WIRE_VERSION}")
    try:
        message_type = MessageType(kind)
    except ValueError:
        known = ", ".join(f"{t.value}={t.name}" for t in MessageType)
        raise WireError("unknown-type", f"message type {kind} is unknown; expected one of {known}") from None
    end = PREAMBLE.size + header_len
    if header_len > MAX_HEADER_BYTES or end > len(data):
        raise WireError("malformed", f"header length {header_len} does not fit in a frame of {len(data)} bytes")
    raw = data[PREAMBLE.size:end]
    if _deeper_than(raw, MAX_HEADER_DEPTH):
        raise WireError("malformed", f"header nests arrays and objects deeper than {MAX_HEADER_DEPTH} levels")
    try:
        header = json.loads(raw, parse_float=_finite, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise WireError("malformed", f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("malformed", f"header must be a JSON object, got {type(header).__name__}")
    return Frame(message_type, header, data[end:])


def _deeper_than(raw: bytes, levels: int) -> bool:
    """Whether JSON text nests arrays and objects more than `levels` deep (brackets in
    strings do not count): a running count of the brackets, vectorized."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * levels:  # the usual header: too few brackets to nest that deep
        return False
    values = np.frombuffer(brackets, np.uint8)
    depth = np.cumsum(np.where(np.isin(values, np.frombuffer(b"[{", np.uint8)), 1, -1))
    return bool(depth.max() > levels)


def is_number(value: object) -> bool:
    """A header value that is a number a double can hold: int or float, never a bool
    (in Python, True is an int)."""
    return type(value) in (int, float) and abs(value) <= sys.float_info.max


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def frame_limit(hello: dict) -> int | None:
    """The largest frame the edge accepts, in bytes, as its HELLO says (`max_frame_bytes`);
    None from an edge that does not say (one that predates it)."""
    limit = hello.get("max_frame_bytes")
    return limit if type(limit) is int and limit > 0 else None


def error(code: str, message: str, request_id: int | None = None, seq: int | None = None) -> Frame:
    """An ERROR frame; request_id (an INFER's id) or seq (a PING's) ties it to the frame
    that caused it, when known."""
    header: dict = {"code": code, "message": message}
    if request_id is not None:
        header["id"] = request_id
    if seq is not None:
        header["seq"] = seq
    return Frame(MessageType.ERROR, header)


def ping(seq: int, sent_ms: float, reply_bytes: int = 0, payload: bytes = b"", exits: int = 0) -> Frame:
    """A probe. The payload measures uplink; reply_bytes asks for a payload back for downlink.
    exits: branch exits on the device not yet reported to the edge (the header leaves it
    out when 0, as a worker that predates it does)."""
    header = {"seq": seq, "sent_ms": sent_ms, "reply_bytes": reply_bytes}
    if exits:
        header["exits"] = exits
    return Frame(MessageType.PING, header, payload)
