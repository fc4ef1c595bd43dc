"""``CloveClient``: the agent side of the Clove protocol, API-compatible with the seed Clove SDK.

Every call sends one frame and waits for the reply with the same request id. Replies are the seed's
dicts with ``success``; a request the runtime refuses becomes
``{"success": False, "error": <message>, "code": <name>}``. A broken connection raises
:class:`CloveConnectionError`. A client is not thread-safe: use one per thread.
"""

import json
import os
import socket
from typing import Any, Dict, List, Optional, Sequence, Union

from ._ipc import IpcMethods
from ._metrics import MetricsMethods
from ._net import NET_ASYNC_REPLIES, NetMethods
from ._record import RecordMethods
from ._state import StateMethods
from ._unserved import UnservedMethods
from .codec import (AUDIT_CATEGORIES, ERROR_NAMES, FLAG_REPLY, Frame, FrameDecoder, FrameError, Opcode, decode,
                    encode, encode_frame)

CLIENT_NAME = "clove_sdk/0.1"
DEFAULT_SOCKET = "/tmp/clove.sock"

Result = Dict[str, Any]


class CloveConnectionError(ConnectionError):
    """The connection to the runtime is missing, broken or speaks something else."""


def _error_result(error: Dict[str, Any]) -> Result:
    code = error["code"]
    return {"success": False, "error": error["message"], "code": ERROR_NAMES.get(code, str(code))}


def _failed(result: Result) -> bool:
    """True for an error result; decoded replies never carry ``success`` at the top."""
    return result.get("success") is False


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _key_values(env: Optional[Dict[str, str]]) -> List[Dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (env or {}).items()]


def _as_bytes(data: Union[str, bytes, None]) -> bytes:
    if data is None:
        return b""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02X}"


def _exec_result(reply: Dict[str, Any]) -> Result:
    return {
        "success": reply["exit_code"] == 0,
        "stdout": _text(reply["stdout"]),
        "stderr": _text(reply["stderr"]),
        "exit_code": reply["exit_code"],
        "signal": reply["signal"],
        "truncated": reply["truncated"],
        "duration_ms": reply["duration_ms"],
    }


#: How ASYNC_POLL results are decoded: opcode -> (reply type, the sync call's result builder).
_ASYNC_REPLIES = {Opcode.EXEC: ("ExecReply", _exec_result), **NET_ASYNC_REPLIES}

_LIMIT_KEYS = ("memory", "max_pids", "cpu_quota", "cpu_period", "cpu_shares")


def _target(name: Union[str, int, None], agent_id: Optional[int]) -> Dict[str, Any]:
    if agent_id is not None:
        return {"Id": agent_id}
    if isinstance(name, int) and not isinstance(name, bool):
        return {"Id": name}
    if name:
        return {"Name": name}
    raise ValueError("name or agent_id is required")


class CloveClient(IpcMethods, MetricsMethods, NetMethods, RecordMethods, StateMethods,
                  UnservedMethods):
    """A connection to the Clove runtime.

    With no ``socket_path`` it adopts the inherited socket in ``CLOVE_FD``, else connects to
    ``CLOVE_SOCKET``, else to ``/tmp/clove.sock``. When ``CLOVE_TOKEN`` is set, :meth:`connect`
    presents it at once with :meth:`hello`, as the runtime admits a token holder only after that.
    """

    def __init__(self, socket_path: Optional[str] = None) -> None:
        self._fd = os.environ.get("CLOVE_FD") if socket_path is None else None
        self.socket_path = socket_path or os.environ.get("CLOVE_SOCKET") or DEFAULT_SOCKET
        self._sock: Optional[socket.socket] = None
        self._decoder = FrameDecoder()
        self._last_id = 0
        self._outstanding: set = set()
        self._replies: Dict[int, Frame] = {}
        self._agent_id = int(os.environ.get("CLOVE_AGENT_ID") or 0)

    @property
    def agent_id(self) -> int:
        """This agent's id: from :meth:`hello`, else ``CLOVE_AGENT_ID``, else 0."""
        return self._agent_id

    # -- transport ------------------------------------------------------------------------------

    def connect(self) -> bool:
        """Opens the connection (a no-op when open); raises :class:`CloveConnectionError`."""
        if self._sock is not None:
            return True
        where = f"CLOVE_FD={self._fd}" if self._fd else self.socket_path
        try:
            if self._fd:  # a duplicate, so closing this client leaves CLOVE_FD valid
                sock = socket.socket(fileno=os.dup(int(self._fd)))
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(self.socket_path)
                except OSError:
                    sock.close()
                    raise
            sock.setblocking(True)
        except (OSError, ValueError) as e:
            raise CloveConnectionError(f"cannot connect to the Clove runtime at {where}: {e}") from e
        self._sock = sock
        if os.environ.get("CLOVE_TOKEN"):
            result = self.hello()
            if _failed(result):
                self.disconnect()
                raise CloveConnectionError(f"the Clove runtime refused the token: {result['error']}")
        return True

    def disconnect(self) -> None:
        """Closes the connection; safe to call twice."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._decoder = FrameDecoder()
        self._outstanding.clear()
        self._replies.clear()

    close = disconnect

    def __enter__(self) -> "CloveClient":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def _broken(self, why: str) -> CloveConnectionError:
        self.disconnect()
        return CloveConnectionError(why)

    def send(self, opcode: int, payload: Union[bytes, str] = b"",
             request_id: Optional[int] = None) -> int:
        """Sends one request frame; returns its request id (the next free one by default)."""
        if self._sock is None:
            raise CloveConnectionError("not connected: call connect() or use `with CloveClient()`")
        if request_id is None:
            self._last_id = self._last_id % 0xFFFFFFFF + 1
            request_id = self._last_id
        frame = encode_frame(opcode, request_id, _as_bytes(payload))
        try:
            self._sock.sendall(frame)
        except OSError as e:
            raise self._broken(f"sending to the Clove runtime failed: {e}") from e
        self._outstanding.add(request_id)
        return request_id

    def recv(self, request_id: int) -> Frame:
        """Reads frames until the reply to ``request_id``, keeping replies to other requests."""
        if request_id not in self._outstanding:
            raise ValueError(f"no request {request_id} is waiting for a reply")
        while request_id not in self._replies:
            frame = self._read_frame()
            if frame.flags & FLAG_REPLY and frame.request_id in self._outstanding:
                self._replies[frame.request_id] = frame
        self._outstanding.discard(request_id)
        return self._replies.pop(request_id)

    def call(self, opcode: int, payload: Union[bytes, str] = b"",
             request_id: Optional[int] = None) -> Frame:
        """Sends a request and returns its reply frame."""
        return self.recv(self.send(opcode, payload, request_id))

    def _read_frame(self) -> Frame:
        while True:
            try:
                frame = self._decoder.next_frame()
            except FrameError as e:
                raise self._broken(f"the Clove runtime sent a bad frame: {e}") from e
            if frame is not None:
                return frame
            try:
                chunk = self._sock.recv(65536)
            except OSError as e:
                raise self._broken(f"receiving from the Clove runtime failed: {e}") from e
            if not chunk:
                raise self._broken("the Clove runtime closed the connection")
            self._decoder.feed(chunk)

    def _rpc(self, opcode: Opcode, request_type: Optional[str] = None,
             request: Optional[Dict[str, Any]] = None, reply_type: Optional[str] = None,
             request_id: Optional[int] = None) -> Result:
        """One request: the decoded reply, or an error result."""
        payload = encode(request_type, request or {}) if request_type else b""
        frame = self.call(opcode, payload, request_id)
        if frame.is_error:
            return _error_result(decode("ErrorReply", frame.payload))
        return decode(reply_type, frame.payload) if reply_type else {}

    def _unserved(self, opcode: Opcode) -> Result:
        result = self._rpc(opcode)
        return result if _failed(result) else {"success": True}

    # -- core -----------------------------------------------------------------------------------

    def hello(self) -> Result:
        """Introduces this client (with ``CLOVE_TOKEN`` if set) and learns its agent id."""
        hello = {"client": CLIENT_NAME, "token": os.environ.get("CLOVE_TOKEN")}
        reply = self._rpc(Opcode.HELLO, "Hello", hello, "HelloReply")
        if _failed(reply):
            return reply
        self._agent_id = reply["agent_id"]
        return {"success": True, **reply}

    def echo(self, message: str) -> Optional[str]:
        """Round-trips ``message`` through the runtime (NOOP); None if refused."""
        reply = self._rpc(Opcode.NOOP, "Echo", {"data": message.encode("utf-8")}, "Echo")
        return None if _failed(reply) else _text(reply["data"])

    def noop(self, message: str = "") -> Optional[str]:
        """Alias of :meth:`echo`."""
        return self.echo(message)

    def exit(self) -> bool:
        """Says goodbye (EXIT) and closes the connection; False if it was not open."""
        if self._sock is None:
            return False
        try:
            self.call(Opcode.EXIT)
        except CloveConnectionError:
            pass  # the runtime may close the connection instead of answering
        self.disconnect()
        return True

    # -- files and exec -------------------------------------------------------------------------

    def exec(self, command: Union[str, Sequence[str]], cwd: Optional[str] = None,
             timeout: Optional[float] = 30, async_: bool = False,
             request_id: Optional[int] = None, env: Optional[Dict[str, str]] = None,
             stdin: Union[str, bytes, None] = None) -> Result:
        """Runs a command line (a str) or a program (a list: argv), ``timeout`` in seconds.

        With ``async_`` the runtime answers at once and :meth:`poll_async` delivers the result
        under the returned ``request_id`` (``request_id`` picks the frame's id).
        """
        argv, line = ([], command) if isinstance(command, str) else (list(command), None)
        request = {
            "argv": argv, "command": line, "cwd": cwd, "env": _key_values(env),
            "stdin": _as_bytes(stdin),
            "timeout_ms": None if timeout is None else int(timeout * 1000),
            "max_output": None, "run_async": async_,
        }
        reply_type = "Accepted" if async_ else "ExecReply"
        reply = self._rpc(Opcode.EXEC, "ExecRequest", request, reply_type, request_id)
        if _failed(reply):
            return reply
        if async_:
            return {"success": True, "async": True, "request_id": reply["request_id"],
                    "status": "accepted"}
        return _exec_result(reply)

    def read_file(self, path: str) -> Result:
        """Reads a whole file: ``content`` as text, ``data`` as bytes."""
        request = {"path": path, "offset": 0, "max_bytes": None}
        reply = self._rpc(Opcode.READ, "ReadRequest", request, "ReadReply")
        if _failed(reply):
            return reply
        return {"success": True, "content": _text(reply["content"]), "data": reply["content"],
                "size": reply["size"]}

    def write_file(self, path: str, content: Union[str, bytes], mode: str = "write") -> Result:
        """Writes (``mode="write"``) or appends (``mode="append"``) text or bytes."""
        if mode not in ("write", "append"):
            raise ValueError(f"mode must be 'write' or 'append', not {mode!r}")
        request = {"path": path, "content": _as_bytes(content), "append": mode == "append"}
        reply = self._rpc(Opcode.WRITE, "WriteRequest", request, "WriteReply")
        return reply if _failed(reply) else {"success": True,
                                             "bytes_written": reply["bytes_written"]}

    def read(self, path: str) -> str:
        """A file's text; raises ``IOError`` when the read is refused."""
        result = self.read_file(path)
        if _failed(result):
            raise IOError(result["error"])
        return result["content"]

    def write(self, path: str, content: Union[str, bytes], mode: str = "write") -> Result:
        """Alias of :meth:`write_file`."""
        return self.write_file(path, content, mode)

    # -- agents ---------------------------------------------------------------------------------

    def spawn(self, name: str, script: Optional[str] = None, sandboxed: bool = True,
              network: bool = False, limits: Optional[Dict[str, int]] = None,
              restart_policy: str = "never", max_restarts: int = 5, restart_window: int = 300,
              level: Optional[str] = None, argv: Optional[Sequence[str]] = None,
              env: Optional[Dict[str, str]] = None, interpreter: Optional[str] = None,
              cwd: Optional[str] = None, isolation: str = "process", vcpus: int = 1) -> Result:
        """Starts a child agent running ``script`` (with ``interpreter``, default python3) or
        ``argv``. ``limits`` keys: memory, max_pids, cpu_quota, cpu_period, cpu_shares.
        ``isolation="vm"`` runs it in its own microVM with ``vcpus`` vCPUs (its memory limit is the
        VM's RAM)."""
        unknown = set(limits or {}) - set(_LIMIT_KEYS)
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        if isolation not in ("process", "vm"):
            raise ValueError(f"unknown isolation {isolation!r} (process or vm)")
        request = {
            "name": name, "argv": list(argv or []), "script": script, "interpreter": interpreter,
            "env": _key_values(env), "cwd": cwd, "level": level, "sandboxed": sandboxed,
            "network": network, "limits": {k: (limits or {}).get(k) for k in _LIMIT_KEYS},
            "restart": {"policy": restart_policy.replace("_", "-"),
                        "max_restarts": max_restarts, "window_s": restart_window},
            "vm": {"vcpus": vcpus} if isolation == "vm" else None,
        }
        reply = self._rpc(Opcode.SPAWN, "SpawnRequest", request, "SpawnReply")
        if _failed(reply):
            return reply
        return {"success": True, "id": reply["id"], "name": reply["name"], "pid": reply["pid"],
                "status": reply["state"]}

    def _control(self, opcode: Opcode, done: str, name: Union[str, int, None],
                 agent_id: Optional[int]) -> Result:
        request = {"target": _target(name, agent_id)}
        reply = self._rpc(opcode, "ControlRequest", request, "ControlReply")
        return reply if _failed(reply) else {"success": True, done: True,
                                             "agent_id": reply["agent_id"]}

    def kill(self, name: Union[str, int, None] = None, agent_id: Optional[int] = None) -> Result:
        """Stops an agent, named or by id."""
        return self._control(Opcode.KILL, "killed", name, agent_id)

    def pause(self, name: Union[str, int, None] = None, agent_id: Optional[int] = None) -> Result:
        """Suspends an agent, named or by id."""
        return self._control(Opcode.PAUSE, "paused", name, agent_id)

    def resume(self, name: Union[str, int, None] = None, agent_id: Optional[int] = None) -> Result:
        """Continues a paused agent, named or by id."""
        return self._control(Opcode.RESUME, "resumed", name, agent_id)

    def list_agents(self) -> List[Dict[str, Any]]:
        """The agents this one may see; ``[]`` if refused (as the seed)."""
        reply = self._rpc(Opcode.LIST, reply_type="ListReply")
        if _failed(reply):
            return []
        return [{
            "id": a["id"], "name": a["name"], "pid": a["pid"], "state": a["state"],
            "uptime_ms": a["uptime_ms"], "level": a["level"], "parent": a["parent"],
            "exit_code": a["exit"]["code"] if a["exit"] else None,
            "signal": a["exit"]["signal"] if a["exit"] else None,
            "oom_killed": bool(a["exit"] and a["exit"]["oom_killed"]),
            "running": a["state"] == "running",
        } for a in reply["agents"]]

    # -- permissions, async, audit --------------------------------------------------------------

    def get_permissions(self) -> Result:
        """This agent's level, ceiling and effective permissions (the seed's JSON shape)."""
        reply = self._rpc(Opcode.GET_PERMS, reply_type="PermsReply")
        if _failed(reply):
            return reply
        return {"success": True, "agent_id": reply["agent_id"], "level": reply["level"],
                "ceiling": reply["ceiling"],
                "permissions": json.loads(reply["permissions_json"])}

    def set_permissions(self, permissions: Optional[Dict[str, Any]] = None,
                        level: Optional[str] = None, agent_id: Optional[int] = None) -> Result:
        """Sets a level and/or custom permissions on this agent or one of its descendants."""
        request = {"agent_id": agent_id, "level": level,
                   "permissions_json": None if permissions is None else json.dumps(permissions)}
        reply = self._rpc(Opcode.SET_PERMS, "SetPermsRequest", request, "PermsReply")
        if _failed(reply):
            return reply
        return {"success": True, "agent_id": reply["agent_id"], "level": reply["level"]}

    def poll_async(self, max_results: int = 10) -> Result:
        """Finished ``async_`` requests; each ``payload`` is what the sync call returns."""
        reply = self._rpc(Opcode.ASYNC_POLL, "AsyncPollRequest", {"max": max_results},
                          "AsyncPollReply")
        if _failed(reply):
            return reply
        results = [self._async_result(r) for r in reply["results"]]
        return {"success": True, "count": len(results), "results": results}

    @staticmethod
    def _async_result(r: Dict[str, Any]) -> Result:
        payload: Any = r["payload"]
        if r["error"] is not None:
            payload = _error_result(r["error"])
        elif r["opcode"] in _ASYNC_REPLIES:
            reply_type, build = _ASYNC_REPLIES[r["opcode"]]
            payload = build(decode(reply_type, payload))
        return {"request_id": r["request_id"], "opcode": r["opcode"],
                "opcode_name": _opcode_name(r["opcode"]), "success": r["error"] is None,
                "payload": payload}

    def get_audit_log(self, category: Optional[str] = None, agent_id: Optional[int] = None,
                      since_id: Optional[int] = None, limit: int = 100) -> Result:
        """Audit entries, oldest first, after ``since_id``."""
        query = {"category": category, "agent_id": agent_id, "since_id": since_id,
                 "limit": limit}
        reply = self._rpc(Opcode.GET_AUDIT_LOG, "AuditQuery", query, "AuditLogReply")
        if _failed(reply):
            return reply
        entries = [{
            "id": e["id"], "timestamp": e["timestamp_ms"], "category": e["category"],
            "event_type": e["event"], "agent_id": e["agent_id"], "agent_name": e["agent_name"],
            "success": e["success"], "details": json.loads(e["details_json"]),
        } for e in reply["entries"]]
        return {"success": True, "count": len(entries), "entries": entries}

    def set_audit_config(self, max_entries: Optional[int] = None, **categories: bool) -> Result:
        """Switches audit categories (``log_syscalls=True``, ``log_ipc=False``, ...; the others
        keep their setting) and sets how many entries are kept. Needs unrestricted rights."""
        unknown = set(categories) - set(AUDIT_CATEGORIES)
        if unknown:
            raise TypeError(f"unknown audit categories: {', '.join(sorted(unknown))}")
        request = {name: categories.get(name) for name in AUDIT_CATEGORIES}
        request["max_entries"] = max_entries
        reply = self._rpc(Opcode.SET_AUDIT_CONFIG, "SetAuditConfigRequest", request, "AuditConfigReply")
        if _failed(reply):
            return reply
        return {"success": True, "config": {**reply["config"], "max_entries": reply["max_entries"]}}


AgentOSClient = CloveClient


def connect(socket_path: Optional[str] = None) -> CloveClient:
    """A connected :class:`CloveClient`; raises :class:`CloveConnectionError`."""
    client = CloveClient(socket_path)
    client.connect()
    return client

