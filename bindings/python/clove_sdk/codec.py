"""Clove's wire format: the 16-byte frame header and schema-driven postcard payloads.

Every message type of ``core/src/protocol/messages.rs`` is declared in :data:`SCHEMAS` as a list of
``(field, type)`` pairs in wire order. Values are plain dicts; ``Vec<u8>`` fields decode to ``bytes``.
"""

import struct
from enum import IntEnum
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple


class CodecError(ValueError):
    """A payload or frame that cannot be encoded or decoded."""


class FrameError(CodecError):
    """Bytes that are not a Clove frame stream (bad magic, version or size)."""


# ---------------------------------------------------------------------------------------------------
# Postcard types


class _Reader:
    """A cursor over a payload that refuses to read past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CodecError(f"truncated payload: need {n} bytes at offset {self.pos}")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]


class Type:
    """A postcard type: writes a Python value to a buffer and reads it back."""

    def encode(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def decode(self, r: _Reader) -> Any:
        raise NotImplementedError


class _UInt(Type):
    """An unsigned integer: one raw byte for u8, else an LEB128 varint."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.max_len = (bits + 6) // 7

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << self.bits:
            raise CodecError(f"{value!r} is not a u{self.bits}")
        if self.bits == 8:
            out.append(value)
            return
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)

    def decode(self, r: _Reader) -> int:
        if self.bits == 8:
            return r.byte()
        value = 0
        for i in range(self.max_len):
            b = r.byte()
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if value >= 1 << self.bits:
                    raise CodecError(f"varint overflows u{self.bits}")
                return value
        raise CodecError(f"varint longer than {self.max_len} bytes for u{self.bits}")


class _SInt(Type):
    """A signed integer: zigzag, then a varint."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.raw = _UInt(bits)

    def encode(self, value: Any, out: bytearray) -> None:
        limit = 1 << (self.bits - 1)
        if isinstance(value, bool) or not isinstance(value, int) or not -limit <= value < limit:
            raise CodecError(f"{value!r} is not an i{self.bits}")
        self.raw.encode((value << 1) ^ (value >> (self.bits - 1)), out)

    def decode(self, r: _Reader) -> int:
        z = self.raw.decode(r)
        return (z >> 1) ^ -(z & 1)


class _Bool(Type):
    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise CodecError(f"{value!r} is not a bool")
        out.append(int(value))

    def decode(self, r: _Reader) -> bool:
        b = r.byte()
        if b > 1:
            raise CodecError(f"bad bool byte {b:#04x}")
        return b == 1


class _Bytes(Type):
    """``Vec<u8>``: a varint length and the bytes. Encodes any bytes-like value or list of ints."""

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, str):
            raise CodecError("bytes field given a str; encode it first")
        try:
            data = bytes(value)
        except (TypeError, ValueError) as e:
            raise CodecError(f"{value!r} is not bytes: {e}") from None
        U64.encode(len(data), out)
        out += data

    def decode(self, r: _Reader) -> bytes:
        return r.take(U64.decode(r))


class _Str(Type):
    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str):
            raise CodecError(f"{value!r} is not a str")
        BYTES.encode(value.encode("utf-8"), out)

    def decode(self, r: _Reader) -> str:
        try:
            return BYTES.decode(r).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"string is not UTF-8: {e}") from None


class Option(Type):
    """``Option<T>``: 0x00 for None, 0x01 and the value otherwise."""

    def __init__(self, inner: Type) -> None:
        self.inner = inner

    def encode(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.encode(value, out)

    def decode(self, r: _Reader) -> Any:
        tag = r.byte()
        if tag > 1:
            raise CodecError(f"bad option tag {tag:#04x}")
        return self.inner.decode(r) if tag else None


class Vec(Type):
    """``Vec<T>``: a varint count and the items."""

    def __init__(self, inner: Type) -> None:
        self.inner = inner

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
            raise CodecError(f"{value!r} is not a list")
        U64.encode(len(value), out)
        for item in value:
            self.inner.encode(item, out)

    def decode(self, r: _Reader) -> List[Any]:
        count = U64.decode(r)
        if count > len(r.data) - r.pos:  # every item takes at least one byte
            raise CodecError(f"truncated payload: {count} items announced")
        return [self.inner.decode(r) for _ in range(count)]


class Enum(Type):
    """A unit-only enum, as the serde name of its variant (``"on-failure"``)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def encode(self, value: Any, out: bytearray) -> None:
        if value not in self.names:
            raise CodecError(f"{value!r} is not one of {', '.join(self.names)}")
        U32.encode(self.names.index(value), out)

    def decode(self, r: _Reader) -> str:
        index = U32.decode(r)
        if index >= len(self.names):
            raise CodecError(f"enum variant {index} out of range")
        return self.names[index]


class Tagged(Type):
    """An enum of newtype variants, as ``{"Variant": value}`` (``Target``)."""

    def __init__(self, *variants: Tuple[str, Type]) -> None:
        self.variants = variants

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, dict) and len(value) == 1:
            (name, inner), = value.items()
            for index, (variant, ty) in enumerate(self.variants):
                if variant == name:
                    U32.encode(index, out)
                    ty.encode(inner, out)
                    return
        names = ", ".join(v for v, _ in self.variants)
        raise CodecError(f"{value!r} is not a one-key dict naming one of {names}")

    def decode(self, r: _Reader) -> Dict[str, Any]:
        index = U32.decode(r)
        if index >= len(self.variants):
            raise CodecError(f"enum variant {index} out of range")
        name, ty = self.variants[index]
        return {name: ty.decode(r)}


class Struct(Type):
    """A struct of :data:`SCHEMAS`, by name: its fields in order, without names."""

    def __init__(self, name: str) -> None:
        self.name = name  # looked up when used, so schemas may refer to later ones

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, dict):
            raise CodecError(f"{self.name} must be a dict, not {type(value).__name__}")
        fields = SCHEMAS[self.name]
        unknown = set(value) - {f for f, _ in fields}
        if unknown:
            raise CodecError(f"{self.name} has no field(s) {', '.join(sorted(unknown))}")
        for field, ty in fields:
            if field not in value:
                raise CodecError(f"{self.name}.{field} is missing")
            try:
                ty.encode(value[field], out)
            except CodecError as e:
                raise CodecError(f"{self.name}.{field}: {e}") from None

    def decode(self, r: _Reader) -> Dict[str, Any]:
        return {field: ty.decode(r) for field, ty in SCHEMAS[self.name]}


U8, U16, U32, U64 = _UInt(8), _UInt(16), _UInt(32), _UInt(64)
I32 = _SInt(32)
BOOL, STR, BYTES = _Bool(), _Str(), _Bytes()

LEVEL = Enum("unrestricted", "standard", "sandboxed", "readonly", "minimal")
AGENT_STATE = Enum("running", "paused", "exited")
RESTART_POLICY = Enum("never", "on-failure", "always")
TARGET = Tagged(("Id", U64), ("Name", STR))
#: SET_AUDIT_CONFIG's switches, in wire order.
AUDIT_CATEGORIES = ("log_syscalls", "log_security", "log_lifecycle", "log_ipc", "log_state",
                    "log_resource", "log_network", "log_world")
SCOPE = Enum("global", "agent", "session")

SCHEMAS: Dict[str, List[Tuple[str, Type]]] = {
    "ErrorReply": [("code", U16), ("message", STR)],
    "Hello": [("client", STR), ("token", Option(STR))],
    "HelloReply": [("protocol_version", U8), ("runtime_version", STR), ("agent_id", U64),
                   ("name", STR), ("level", LEVEL), ("features", Vec(STR))],
    "Echo": [("data", BYTES)],
    "KeyValue": [("key", STR), ("value", STR)],
    # core/src/protocol/ipc.rs
    "RegisterRequest": [("name", STR)],
    "RegisterReply": [("agent_id", U64), ("name", STR)],
    "SendRequest": [("to", TARGET), ("message_json", STR)],
    "SendReply": [("delivered_to", U64)],
    "RecvRequest": [("max", U32), ("wait_ms", Option(U32))],
    "Message": [("from", U64), ("from_name", Option(STR)), ("message_json", STR), ("age_ms", U64)],
    "RecvReply": [("messages", Vec(Struct("Message")))],
    "BroadcastRequest": [("message_json", STR), ("include_self", BOOL)],
    "BroadcastReply": [("delivered_count", U32), ("full", Vec(U64))],
    "SubscribeRequest": [("event_types", Vec(STR)), ("all", BOOL)],
    "SubscribeReply": [("subscribed", Vec(STR))],
    "PollEventsRequest": [("max", U32)],
    "BusEvent": [("event_type", STR), ("custom_type", Option(STR)), ("data_json", STR),
                 ("source_agent_id", U64), ("timestamp_ms", U64)],
    "PollEventsReply": [("events", Vec(Struct("BusEvent"))), ("dropped", U64)],
    "EmitRequest": [("event_type", STR), ("data_json", STR)],
    "EmitReply": [("delivered", U32)],
    "ExecRequest": [("argv", Vec(STR)), ("command", Option(STR)), ("cwd", Option(STR)),
                    ("env", Vec(Struct("KeyValue"))), ("stdin", BYTES),
                    ("timeout_ms", Option(U32)), ("max_output", Option(U32)),
                    ("run_async", BOOL)],
    "ExecReply": [("exit_code", Option(I32)), ("signal", Option(I32)), ("stdout", BYTES),
                  ("stderr", BYTES), ("truncated", BOOL), ("duration_ms", U64)],
    "Accepted": [("request_id", U32)],
    "AsyncPollRequest": [("max", U32)],
    "AsyncResult": [("request_id", U32), ("opcode", U8), ("error", Option(Struct("ErrorReply"))),
                    ("payload", BYTES)],
    "AsyncPollReply": [("results", Vec(Struct("AsyncResult")))],
    "ReadRequest": [("path", STR), ("offset", U64), ("max_bytes", Option(U64))],
    "ReadReply": [("content", BYTES), ("size", U64)],
    "WriteRequest": [("path", STR), ("content", BYTES), ("append", BOOL)],
    "WriteReply": [("bytes_written", U64)],
    "Limits": [("memory", Option(U64)), ("max_pids", Option(U32)), ("cpu_quota", Option(U64)),
               ("cpu_period", Option(U64)), ("cpu_shares", Option(U64))],
    "RestartSpec": [("policy", RESTART_POLICY), ("max_restarts", U32), ("window_s", U32)],
    "SpawnRequest": [("name", STR), ("argv", Vec(STR)), ("script", Option(STR)),
                     ("interpreter", Option(STR)), ("env", Vec(Struct("KeyValue"))),
                     ("cwd", Option(STR)), ("level", Option(LEVEL)), ("sandboxed", BOOL),
                     ("network", BOOL), ("limits", Struct("Limits")),
                     ("restart", Struct("RestartSpec")), ("vm", Option(Struct("VmSpec")))],
    "VmSpec": [("vcpus", U8)],
    "SpawnReply": [("id", U64), ("name", STR), ("pid", U32), ("state", AGENT_STATE)],
    "ControlRequest": [("target", TARGET)],
    "ControlReply": [("agent_id", U64)],
    "ExitInfo": [("code", Option(I32)), ("signal", Option(I32)), ("oom_killed", BOOL)],
    "AgentInfo": [("id", U64), ("name", STR), ("pid", U32), ("state", AGENT_STATE),
                  ("uptime_ms", U64), ("level", Option(LEVEL)), ("parent", Option(U64)),
                  ("exit", Option(Struct("ExitInfo")))],
    "ListReply": [("agents", Vec(Struct("AgentInfo")))],
    "PermsReply": [("agent_id", U64), ("level", Option(LEVEL)), ("ceiling", Option(LEVEL)),
                   ("permissions_json", STR)],
    "SetPermsRequest": [("agent_id", Option(U64)), ("level", Option(LEVEL)),
                        ("permissions_json", Option(STR))],
    "AuditQuery": [("category", Option(STR)), ("agent_id", Option(U64)),
                   ("since_id", Option(U64)), ("limit", U32)],
    "AuditLogReply": [("entries", Vec(Struct("AuditEntry")))],
    # core/src/protocol/record.rs
    "RecordStartRequest": [("include_think", BOOL), ("include_http", BOOL), ("include_exec", BOOL),
                           ("filter_agents", Vec(U64)), ("max_entries", U32)],
    "RecordStatusRequest": [("export", BOOL)],
    "RecordStatus": [("recording", BOOL), ("entries", U32), ("truncated", U64),
                     ("recording_json", Option(STR))],
    "ReplayStartRequest": [("recording_json", STR), ("source_agent_id", Option(U64))],
    "ReplayStatus": [("active", BOOL), ("position", U32), ("total", U32),
                     ("diverged", Option(STR))],
    "SetAuditConfigRequest": [(name, Option(BOOL)) for name in AUDIT_CATEGORIES]
                             + [("max_entries", Option(U32))],
    "AuditConfig": [(name, BOOL) for name in AUDIT_CATEGORIES],
    "AuditConfigReply": [("config", Struct("AuditConfig")), ("max_entries", U32)],
    "MetricsRequest": [("agent_id", Option(U64))],
    "SyscallCount": [("opcode", U8), ("count", U64)],
    "CgroupMetrics": [("cpu_usage_us", U64), ("cpu_throttled_us", U64), ("nr_throttled", U64),
                      ("memory_current", U64), ("memory_peak", U64), ("pids_current", U64),
                      ("oom_kills", U64)],
    "AgentMetrics": [("agent_id", U64), ("name", STR), ("state", AGENT_STATE), ("pid", U32),
                     ("uptime_ms", U64), ("cpu_time_us", U64), ("rss_bytes", U64),
                     ("threads", U32), ("fds", U32), ("syscalls", Vec(Struct("SyscallCount"))),
                     ("cgroup", Option(Struct("CgroupMetrics")))],
    "AllAgentMetrics": [("agents", Vec(Struct("AgentMetrics")))],
    "SystemMetrics": [("cpu_count", U32), ("load_avg_milli", Vec(U32)), ("memory_total", U64),
                      ("memory_available", U64), ("uptime_ms", U64), ("agents_running", U32),
                      ("runtime_rss_bytes", U64)],
    # core/src/protocol/state.rs
    "StoreRequest": [("key", STR), ("value_json", STR), ("scope", SCOPE), ("ttl_ms", Option(U64))],
    "StoreReply": [("key", STR), ("scope", SCOPE), ("expires_at_ms", Option(U64))],
    "KeyRequest": [("key", STR), ("scope", Option(SCOPE))],
    "StoredValue": [("scope", SCOPE), ("value_json", STR), ("expires_at_ms", Option(U64))],
    "FetchReply": [("value", Option(Struct("StoredValue")))],
    "DeleteReply": [("deleted", Option(SCOPE))],
    "KeysRequest": [("prefix", STR), ("scope", Option(SCOPE)), ("after", Option(STR)),
                    ("limit", U32)],
    "KeyEntry": [("key", STR), ("scope", SCOPE)],
    "KeysReply": [("keys", Vec(Struct("KeyEntry"))), ("more", BOOL)],
    "ThinkRequest": [("prompt", STR), ("image", Option(Struct("ThinkImage"))),
                     ("system_instruction", Option(STR)), ("temperature_milli", Option(U32)),
                     ("model", Option(STR)), ("max_tokens", Option(U32)),
                     ("thinking_level", Option(STR)), ("run_async", BOOL)],
    "ThinkImage": [("data", BYTES), ("mime_type", STR)],
    "ThinkReply": [("text", STR), ("model", STR), ("provider", STR), ("input_tokens", U64),
                   ("output_tokens", U64)],
    "HttpRequest": [("url", STR), ("method", STR), ("headers", Vec(Struct("KeyValue"))),
                    ("body", BYTES), ("timeout_ms", Option(U32)),
                    ("max_response_bytes", Option(U32)), ("run_async", BOOL)],
    "HttpReply": [("status", U16), ("headers", Vec(Struct("KeyValue"))), ("body", BYTES),
                  ("truncated", BOOL), ("url", STR)],
    # core/src/audit.rs
    "AuditEntry": [("id", U64), ("timestamp_ms", U64), ("category", STR), ("event", STR),
                   ("agent_id", U64), ("agent_name", STR), ("success", BOOL),
                   ("details_json", STR)],
}


def _check_type(type_name: str) -> None:
    if type_name not in SCHEMAS:
        raise CodecError(f"unknown message type {type_name!r}")


def encode(type_name: str, value: Dict[str, Any]) -> bytes:
    """Encodes ``value`` as the message type ``type_name``."""
    _check_type(type_name)
    out = bytearray()
    Struct(type_name).encode(value, out)
    return bytes(out)


def decode(type_name: str, data: bytes) -> Dict[str, Any]:
    """Decodes a whole payload as ``type_name``; truncated input and trailing bytes are errors."""
    _check_type(type_name)
    r = _Reader(data)
    value = Struct(type_name).decode(r)
    if r.pos != len(data):
        raise CodecError(f"{type_name} payload has {len(data) - r.pos} trailing bytes")
    return value


# ---------------------------------------------------------------------------------------------------
# Opcodes, error codes and frames


class Opcode(IntEnum):
    """Opcode numbers (the seed Clove's map)."""

    NOOP, THINK, EXEC, READ, WRITE = 0x00, 0x01, 0x02, 0x03, 0x04
    SPAWN, KILL, LIST, PAUSE, RESUME = 0x10, 0x11, 0x12, 0x14, 0x15
    SEND, RECV, BROADCAST, REGISTER = 0x20, 0x21, 0x22, 0x23
    STORE, FETCH, DELETE, KEYS = 0x30, 0x31, 0x32, 0x33
    GET_PERMS, SET_PERMS = 0x40, 0x41
    HTTP = 0x50
    SUBSCRIBE, UNSUBSCRIBE, POLL_EVENTS, EMIT = 0x60, 0x61, 0x62, 0x63
    RECORD_START, RECORD_STOP, RECORD_STATUS, REPLAY_START, REPLAY_STATUS = range(0x70, 0x75)
    GET_AUDIT_LOG, SET_AUDIT_CONFIG = 0x76, 0x77
    ASYNC_POLL = 0x80
    (WORLD_CREATE, WORLD_DESTROY, WORLD_LIST, WORLD_JOIN, WORLD_LEAVE, WORLD_EVENT, WORLD_STATE,
     WORLD_SNAPSHOT, WORLD_RESTORE) = range(0xA0, 0xA9)
    (TUNNEL_CONNECT, TUNNEL_DISCONNECT, TUNNEL_STATUS, TUNNEL_LIST_REMOTES,
     TUNNEL_CONFIG) = range(0xB0, 0xB5)
    METRICS_SYSTEM, METRICS_AGENT, METRICS_ALL_AGENTS, METRICS_CGROUP = range(0xC0, 0xC4)
    HELLO, EXIT = 0xFE, 0xFF


#: ``ErrorReply.code`` numbers to their names (``ErrorCode::name`` in Rust).
ERROR_NAMES = {
    1: "bad_frame", 2: "unknown_opcode", 3: "bad_payload", 4: "permission_denied",
    5: "not_found", 6: "timeout", 7: "limit_exceeded", 8: "io", 9: "unsupported",
    10: "invalid_argument", 11: "conflict", 12: "internal",
}

MAGIC = b"CLOV"
PROTOCOL_VERSION = 1
HEADER_LEN = 16
MAX_PAYLOAD = 1 << 20
FLAG_REPLY = 1
FLAG_ERROR = 2
_HEADER = struct.Struct("<4sBBHII")


class Frame(NamedTuple):
    """One decoded frame."""

    opcode: int
    flags: int
    request_id: int
    payload: bytes

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


def encode_frame(opcode: int, request_id: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """A whole frame: the 16-byte header and ``payload``."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the maximum of {MAX_PAYLOAD}")
    try:
        header = _HEADER.pack(MAGIC, PROTOCOL_VERSION, opcode, flags, request_id, len(payload))
    except struct.error as e:
        raise FrameError(f"bad header field: {e}") from None
    return header + bytes(payload)


def parse_header(header: bytes, max_payload: int = MAX_PAYLOAD) -> Tuple[int, int, int, int]:
    """Validates a 16-byte header; returns ``(opcode, flags, request_id, payload_len)``."""
    if len(header) != HEADER_LEN:
        raise FrameError(f"header must be {HEADER_LEN} bytes, got {len(header)}")
    magic, version, opcode, flags, request_id, length = _HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}, expected b'CLOV'")
    if version != PROTOCOL_VERSION:
        raise FrameError(f"protocol version {version} is not supported")
    if length > max_payload:
        raise FrameError(f"payload of {length} bytes exceeds the maximum of {max_payload}")
    return opcode, flags, request_id, length


class FrameDecoder:
    """Splits a byte stream into frames: :meth:`feed` bytes, then take :meth:`next_frame` until None.

    A header is validated as soon as it is complete, before its payload is buffered.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Optional[Frame]:
        """The next whole frame, or None until more bytes arrive; raises :class:`FrameError`."""
        if len(self._buf) < HEADER_LEN:
            return None
        opcode, flags, request_id, length = parse_header(bytes(self._buf[:HEADER_LEN]),
                                                         self.max_payload)
        total = HEADER_LEN + length
        if len(self._buf) < total:
            return None
        payload = bytes(self._buf[HEADER_LEN:total])
        del self._buf[:total]
        return Frame(opcode, flags, request_id, payload)

