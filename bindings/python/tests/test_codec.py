"""The Python codec against the Rust codec's golden vectors, and its refusals."""

import json
import pathlib

import pytest

from clove_sdk import codec
from clove_sdk.codec import CodecError, FrameDecoder, FrameError

VECTORS = json.loads(
    (pathlib.Path(__file__).parent / "../../../tests/vectors/payloads.json").read_text())
PAYLOADS = VECTORS["payloads"]
FRAMES = VECTORS["frames"]


def as_json(value):
    """The serde_json form: bytes become lists of ints."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def vector_id(v):
    return f"{v['type']}-{v['hex'][:16]}"


@pytest.mark.parametrize("vector", PAYLOADS, ids=vector_id)
def test_payload_vector_encodes_to_its_hex(vector):
    assert codec.encode(vector["type"], vector["value"]).hex() == vector["hex"]


@pytest.mark.parametrize("vector", PAYLOADS, ids=vector_id)
def test_payload_vector_decodes_to_its_value(vector):
    assert as_json(codec.decode(vector["type"], bytes.fromhex(vector["hex"]))) == vector["value"]


def test_every_top_level_type_has_a_vector():
    nested = {"KeyValue", "Limits", "RestartSpec", "VmSpec", "ExitInfo", "AgentInfo", "AsyncResult",
              "AuditEntry", "SyscallCount", "Message", "BusEvent",
              "AuditConfig", "StoredValue", "KeyEntry", "ThinkImage"}
    assert set(codec.SCHEMAS) - nested == {v["type"] for v in PAYLOADS}


@pytest.mark.parametrize("vector", PAYLOADS, ids=vector_id)
def test_every_truncation_is_refused(vector):
    data = bytes.fromhex(vector["hex"])
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            codec.decode(vector["type"], data[:cut])


@pytest.mark.parametrize("vector", PAYLOADS, ids=vector_id)
def test_trailing_bytes_are_refused(vector):
    with pytest.raises(CodecError, match="trailing"):
        codec.decode(vector["type"], bytes.fromhex(vector["hex"]) + b"\x00")


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_frame_vector(vector):
    raw = bytes.fromhex(vector["hex"])
    payload = raw[codec.HEADER_LEN:]
    assert codec.encode_frame(vector["opcode"], vector["request_id"], payload,
                              vector["flags"]) == raw
    decoder = FrameDecoder()
    decoder.feed(raw)
    assert decoder.next_frame() == codec.Frame(vector["opcode"], vector["flags"],
                                               vector["request_id"], payload)
    assert decoder.next_frame() is None


def test_frames_split_and_pipelined():
    stream = b"".join(codec.encode_frame(0, i, bytes([i]) * i) for i in range(1, 4))
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):  # one byte at a time
        decoder.feed(stream[i:i + 1])
        frame = decoder.next_frame()
        if frame is not None:
            got.append(frame)
    assert [(f.request_id, f.payload) for f in got] == [(i, bytes([i]) * i) for i in range(1, 4)]


def test_error_reply_frame_decodes():
    raw = bytes.fromhex(next(f for f in FRAMES if f["flags"] & codec.FLAG_ERROR)["hex"])
    decoder = FrameDecoder()
    decoder.feed(raw)
    frame = decoder.next_frame()
    assert frame.is_error
    assert codec.decode("ErrorReply", frame.payload) == {"code": 2,
                                                         "message": "unknown opcode 0x99"}


def header(magic=b"CLOV", version=1, length=0):
    return magic + bytes([version, 0, 0, 0]) + (1).to_bytes(4, "little") + length.to_bytes(4, "little")


@pytest.mark.parametrize("raw, message", [
    (header(magic=b"AGNT"), "magic"),
    (header(version=2), "version"),
    (header(length=codec.MAX_PAYLOAD + 1), "exceeds"),
])
def test_bad_headers_are_refused_before_the_payload(raw, message):
    decoder = FrameDecoder()
    decoder.feed(raw)
    with pytest.raises(FrameError, match=message):
        decoder.next_frame()


def test_max_payload_is_accepted_and_oversize_cannot_be_encoded():
    assert codec.parse_header(header(length=codec.MAX_PAYLOAD))[3] == codec.MAX_PAYLOAD
    with pytest.raises(FrameError):
        codec.encode_frame(0, 1, bytes(codec.MAX_PAYLOAD + 1))


@pytest.mark.parametrize("type_name, hex_bytes", [
    ("Hello", "0161" "02"),                  # bad option tag
    ("WriteRequest", "0161" "00" "02"),      # bad bool
    ("HelloReply", "01" "00" "01" "00" "05" "00"),  # level variant 5 out of range
    ("ControlRequest", "0205"),              # Target variant 2 out of range
    ("WriteReply", "ffffffffffffffffff7f"),  # varint too long for u64
    ("Accepted", "ffffffff1f"),              # varint overflows u32
    ("KeyValue", "01ff0100"),                # a string must be UTF-8
    ("ListReply", "05"),                     # count larger than the payload
])
def test_malformed_payloads_are_refused(type_name, hex_bytes):
    with pytest.raises(CodecError):
        codec.decode(type_name, bytes.fromhex(hex_bytes))


@pytest.mark.parametrize("type_name, value", [
    ("Accepted", {"request_id": 1 << 32}),
    ("Accepted", {"request_id": -1}),
    ("Accepted", {"request_id": True}),
    ("Accepted", {}),
    ("Accepted", {"request_id": 1, "extra": 2}),
    ("ExitInfo", {"code": 1 << 31, "signal": None}),
    ("RestartSpec", {"policy": "sometimes", "max_restarts": 1, "window_s": 1}),
    ("ControlRequest", {"target": {"Pid": 1}}),
    ("Echo", {"data": "text"}),
    ("Nope", {}),
])
def test_bad_values_are_refused(type_name, value):
    with pytest.raises(CodecError):
        codec.encode(type_name, value)


def test_signed_extremes_round_trip():
    for code in (-(1 << 31), -1, 0, 1, (1 << 31) - 1):
        value = {"code": code, "signal": None, "oom_killed": False}
        assert codec.decode("ExitInfo", codec.encode("ExitInfo", value)) == value
