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


def _raw(kind, header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("<2sBBI", b"ST", wire.WIRE_VERSION, kind, len(header)) + header + payload


def test_headers_are_strict_json_without_nan_infinity_or_overflow():
    for header in [b'{"seq": 1, "sent_ms": NaN}', b'{"sent_ms": Infinity}', b'{"sent_ms": -Infinity}',
                   b'{"sent_ms": 1e400}']:
        with pytest.raises(WireError, match="not valid UTF-8 JSON") as caught:
            wire.decode(_raw(MessageType.PING, header))
        assert caught.value.code == "malformed"
    assert wire.decode(_raw(MessageType.PING, b'{"sent_ms": 1e300}')).header == {"sent_ms": 1e300}


def test_deeply_nested_headers_are_malformed_not_a_crash():
    deep = b'{"id": 1, "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    with pytest.raises(WireError, match="deeper than 32 levels") as caught:
        wire.decode(_raw(MessageType.INFER, deep))
    assert caught.value.code == "malformed"
    at_limit = b'{"x": ' + b"[" * 31 + b'"]]]"' + b"]" * 31 + b"}"  # brackets in strings do not count
    assert wire.decode(_raw(MessageType.INFER, at_limit)).header["x"][0][0]


def test_nan_is_never_sent():
    with pytest.raises(ValueError):
        wire.encode(wire.Frame(MessageType.PONG, {"sent_ms": float("nan")}))


def test_numbers_are_ints_or_floats_a_double_holds_never_booleans():
    assert wire.is_number(3) and wire.is_number(-2.5) and wire.is_number(10**300)
    assert not any(wire.is_number(v) for v in (True, False, None, "1", 10**400, float("nan"), float("inf"), [1]))


def test_error_frames_tie_to_a_ping_by_its_seq():
    frame = wire.decode(wire.encode(wire.error("busy", "later", seq=4)))
    assert frame.header == {"code": "busy", "message": "later", "seq": 4}
