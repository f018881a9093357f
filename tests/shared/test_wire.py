"""The wire format. Runs in CPython (pytest) and inside Pyodide (tests/test_in_pyodide.py)."""

import struct

import pytest

from strata import wire
from strata.wire import Frame, MessageType, WireError


def test_round_trip_keeps_type_header_and_payload():
    frame = Frame(MessageType.INFER, {"id": 7, "shape": [1, 32, 32, 32]}, bytes(range(256)))
    assert wire.decode(wire.encode(frame)) == frame


def test_ping_carries_its_fields():
    frame = wire.decode(wire.encode(wire.ping(3, 12.5, reply_bytes=100, payload=b"x" * 10)))
    assert frame.type is MessageType.PING
    assert frame.header == {"seq": 3, "sent_ms": 12.5, "reply_bytes": 100}
    assert frame.payload == b"x" * 10


def test_error_frame_names_code_message_and_request():
    frame = wire.decode(wire.encode(wire.error("bad-shape", "expected (1, 32, 32, 32)", request_id=9)))
    assert frame.type is MessageType.ERROR
    assert frame.header == {"code": "bad-shape", "message": "expected (1, 32, 32, 32)", "id": 9}


def _code(data, **kwargs):
    with pytest.raises(WireError) as caught:
        wire.decode(data, **kwargs)
    return caught.value.code


def test_truncated_and_foreign_frames_are_malformed():
    good = wire.encode(wire.ping(1, 0.0))
    assert _code(good[:5]) == "malformed"
    assert _code(good[:-3]) == "malformed"
    assert _code(b"GET / HTTP/1.1\r\n\r\n") == "malformed"
    assert _code(b"") == "malformed"


def test_header_must_be_a_json_object():
    preamble = struct.pack("<2sBBI", b"ST", wire.WIRE_VERSION, MessageType.PING, 2)
    assert _code(preamble + b"[]") == "malformed"
    assert _code(preamble + b"{x") == "malformed"


def test_unknown_version_and_type_are_named():
    good = bytearray(wire.encode(wire.ping(1, 0.0)))
    future = bytes(good[:2]) + bytes([wire.WIRE_VERSION + 1]) + bytes(good[3:])
    assert _code(future) == "unsupported-version"
    unknown = bytes(good[:3]) + bytes([200]) + bytes(good[4:])
    with pytest.raises(WireError, match="message type 200 is unknown"):
        wire.decode(unknown)


def test_size_limit_is_enforced_before_parsing():
    assert _code(wire.encode(wire.ping(1, 0.0, payload=bytes(1000))), max_size=100) == "too-large"
