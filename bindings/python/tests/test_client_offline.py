"""CloveClient against a fake runtime on the far end of a socketpair (no real runtime needed)."""

import socket
import threading
import time

import pytest

from clove_sdk import AgentOSClient, CloveClient, CloveConnectionError, connect
from clove_sdk.codec import (FLAG_ERROR, FLAG_REPLY, FrameDecoder, Opcode, decode, encode,
                             encode_frame)

REQUEST_TYPES = {
    Opcode.HELLO: "Hello", Opcode.NOOP: "Echo", Opcode.EXEC: "ExecRequest",
    Opcode.READ: "ReadRequest", Opcode.WRITE: "WriteRequest", Opcode.SPAWN: "SpawnRequest",
    Opcode.KILL: "ControlRequest", Opcode.PAUSE: "ControlRequest",
    Opcode.RESUME: "ControlRequest", Opcode.SET_PERMS: "SetPermsRequest",
    Opcode.ASYNC_POLL: "AsyncPollRequest", Opcode.GET_AUDIT_LOG: "AuditQuery",
}
EXEC_REPLY = {"exit_code": 0, "signal": None, "stdout": b"hi\n", "stderr": b"",
              "truncated": False, "duration_ms": 5}
AGENTS = [
    {"id": 2, "name": "a", "pid": 10, "state": "running", "uptime_ms": 1500,
     "level": "standard", "parent": 1, "exit": None},
    {"id": 3, "name": "b", "pid": 11, "state": "exited", "uptime_ms": 20,
     "level": None, "parent": None, "exit": {"code": None, "signal": 9, "oom_killed": True}},
]


def reply(frame, type_name=None, value=None):
    payload = encode(type_name, value) if type_name else b""
    return encode_frame(frame.opcode, frame.request_id, payload, FLAG_REPLY)


def error(frame, code, message):
    payload = encode("ErrorReply", {"code": code, "message": message})
    return encode_frame(frame.opcode, frame.request_id, payload, FLAG_REPLY | FLAG_ERROR)


def target_id(request):
    return request["target"].get("Id", 9)


ANSWERS = {
    Opcode.HELLO: lambda r: ("HelloReply", {
        "protocol_version": 1, "runtime_version": "0.1.0", "agent_id": 7, "name": "me",
        "level": "standard", "features": ["exec", "spawn"]}),
    Opcode.NOOP: lambda r: ("Echo", r),
    Opcode.EXEC: lambda r: ("ExecReply", EXEC_REPLY),
    Opcode.READ: lambda r: ("ReadReply", {"content": b"caf\xc3\xa9\xff", "size": 6}),
    Opcode.WRITE: lambda r: ("WriteReply", {"bytes_written": len(r["content"])}),
    Opcode.SPAWN: lambda r: ("SpawnReply", {"id": 9, "name": r["name"], "pid": 4242,
                                            "state": "running"}),
    Opcode.KILL: lambda r: ("ControlReply", {"agent_id": target_id(r)}),
    Opcode.PAUSE: lambda r: ("ControlReply", {"agent_id": target_id(r)}),
    Opcode.RESUME: lambda r: ("ControlReply", {"agent_id": target_id(r)}),
    Opcode.LIST: lambda r: ("ListReply", {"agents": AGENTS}),
    Opcode.GET_PERMS: lambda r: ("PermsReply", {"agent_id": 7, "level": "standard",
                                                "ceiling": "unrestricted",
                                                "permissions_json": '{"can_exec": false}'}),
    Opcode.SET_PERMS: lambda r: ("PermsReply", {"agent_id": r["agent_id"] or 7,
                                                "level": r["level"] or "standard",
                                                "ceiling": None,
                                                "permissions_json": "{}"}),
    Opcode.ASYNC_POLL: lambda r: ("AsyncPollReply", {"results": [
        {"request_id": 5, "opcode": 2, "error": None, "payload": encode("ExecReply", EXEC_REPLY)},
        {"request_id": 6, "opcode": 2, "error": {"code": 6, "message": "timed out"},
         "payload": b""},
    ]}),
    Opcode.GET_AUDIT_LOG: lambda r: ("AuditLogReply", {"entries": [
        {"id": 1, "timestamp_ms": 1700000000000, "category": "security", "event": "READ",
         "agent_id": 3, "agent_name": "x", "success": False,
         "details_json": '{"path": "/etc/shadow"}'}]}),
    Opcode.EXIT: lambda r: (None, None),
}


def answer(frame):
    """The default fake runtime: a canned reply per opcode, ``unsupported`` for the rest."""
    if frame.opcode not in ANSWERS:
        return [error(frame, 9, f"{Opcode(frame.opcode).name} is not served yet")]
    request = decode(REQUEST_TYPES[frame.opcode], frame.payload) \
        if frame.opcode in REQUEST_TYPES else None
    return [reply(frame, *ANSWERS[frame.opcode](request))]


class FakeRuntime:
    """Reads frames on ``sock`` and sends the chunks ``self.answer(frame)`` returns, one by one."""

    def __init__(self, sock):
        self.sock = sock
        self.answer = answer
        self.requests = []
        self.crash = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self._serve_frames()
        except Exception as e:  # hang up, so a broken test fails instead of hanging
            self.crash = e
            self.sock.close()

    def _serve_frames(self):
        decoder = FrameDecoder()
        data = self.sock.recv(65536)
        while data:
            decoder.feed(data)
            frame = decoder.next_frame()
            while frame is not None:
                self.requests.append(frame)
                for chunk in self.answer(frame):
                    self.sock.sendall(chunk)
                    time.sleep(0.01)
                frame = decoder.next_frame()
            data = self.sock.recv(65536)

    def last(self, type_name):
        return decode(type_name, self.requests[-1].payload)

    def stop(self):
        if self.crash is None:
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def env(monkeypatch):
    for name in ("CLOVE_FD", "CLOVE_SOCKET", "CLOVE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def pair(env):
    """A connected client (through ``CLOVE_FD``) and the fake runtime behind it."""
    ours, theirs = socket.socketpair()
    env.setenv("CLOVE_FD", str(ours.fileno()))
    runtime = FakeRuntime(theirs)
    with CloveClient() as client:
        yield client, runtime
    ours.close()
    runtime.stop()
    assert runtime.crash is None, f"the fake runtime crashed: {runtime.crash!r}"


def test_hello_sends_the_token_and_remembers_the_agent_id(pair, env):
    client, runtime = pair
    assert client.agent_id == 0
    env.setenv("CLOVE_TOKEN", "s3cret")
    assert client.hello() == {"success": True, "protocol_version": 1, "runtime_version": "0.1.0",
                              "agent_id": 7, "name": "me", "level": "standard",
                              "features": ["exec", "spawn"]}
    assert runtime.last("Hello") == {"client": "clove_sdk/0.1", "token": "s3cret"}
    assert client.agent_id == 7


def test_echo_and_noop(pair):
    client, runtime = pair
    assert client.echo("héllo") == "héllo"
    assert client.noop() == ""
    assert [f.request_id for f in runtime.requests] == [1, 2]


def test_exec_command_line(pair):
    client, runtime = pair
    assert client.exec("echo hi") == {"success": True, "stdout": "hi\n", "stderr": "",
                                      "exit_code": 0, "signal": None, "truncated": False,
                                      "duration_ms": 5}
    assert runtime.last("ExecRequest") == {
        "argv": [], "command": "echo hi", "cwd": None, "env": [], "stdin": b"",
        "timeout_ms": 30000, "max_output": None, "run_async": False}


def test_exec_argv_env_stdin_timeout(pair):
    client, runtime = pair
    client.exec(["cat", "-n"], cwd="/tmp", timeout=1.5, env={"A": "1"}, stdin="in")
    assert runtime.last("ExecRequest") == {
        "argv": ["cat", "-n"], "command": None, "cwd": "/tmp",
        "env": [{"key": "A", "value": "1"}], "stdin": b"in", "timeout_ms": 1500,
        "max_output": None, "run_async": False}


def test_exec_async_then_poll(pair):
    client, runtime = pair
    runtime.answer = lambda f: [reply(f, "Accepted", {"request_id": f.request_id})]
    assert client.exec("sleep 1", async_=True, request_id=5) == {
        "success": True, "async": True, "request_id": 5, "status": "accepted"}
    assert runtime.requests[-1].request_id == 5
    runtime.answer = answer
    polled = client.poll_async(max_results=3)
    assert runtime.last("AsyncPollRequest") == {"max": 3}
    assert polled == {"success": True, "count": 2, "results": [
        {"request_id": 5, "opcode": 2, "opcode_name": "EXEC", "success": True,
         "payload": client.exec("x")},
        {"request_id": 6, "opcode": 2, "opcode_name": "EXEC", "success": False,
         "payload": {"success": False, "error": "timed out", "code": "timeout"}},
    ]}


def test_files(pair):
    client, runtime = pair
    assert client.read_file("/tmp/a") == {"success": True, "content": "café\ufffd",
                                          "data": b"caf\xc3\xa9\xff", "size": 6}
    assert runtime.last("ReadRequest") == {"path": "/tmp/a", "offset": 0, "max_bytes": None}
    assert client.read("/tmp/a") == "café\ufffd"
    assert client.write_file("/tmp/a", "héllo") == {"success": True, "bytes_written": 6}
    assert runtime.last("WriteRequest") == {"path": "/tmp/a", "content": "héllo".encode(),
                                            "append": False}
    assert client.write("/tmp/a", b"\x00\x01", mode="append")["bytes_written"] == 2
    assert runtime.last("WriteRequest")["append"] is True
    with pytest.raises(ValueError):
        client.write_file("/tmp/a", "x", mode="truncate")


def test_spawn(pair):
    client, runtime = pair
    result = client.spawn("worker", "/srv/agent.py", limits={"memory": 1 << 30, "max_pids": 64},
                          restart_policy="on_failure", level="sandboxed", env={"K": "V"})
    assert result == {"success": True, "id": 9, "name": "worker", "pid": 4242,
                      "status": "running"}
    assert runtime.last("SpawnRequest") == {
        "name": "worker", "argv": [], "script": "/srv/agent.py", "interpreter": None,
        "env": [{"key": "K", "value": "V"}], "cwd": None, "level": "sandboxed",
        "sandboxed": True, "network": False,
        "limits": {"memory": 1 << 30, "max_pids": 64, "cpu_quota": None, "cpu_period": None,
                   "cpu_shares": None},
        "restart": {"policy": "on-failure", "max_restarts": 5, "window_s": 300}, "vm": None}
    with pytest.raises(ValueError, match="gpu"):
        client.spawn("w", "s.py", limits={"gpu": 1})
    client.spawn("guest", "/srv/agent.py", isolation="vm", vcpus=2)
    assert runtime.last("SpawnRequest")["vm"] == {"vcpus": 2}
    with pytest.raises(ValueError, match="isolation"):
        client.spawn("w", "s.py", isolation="container")


def test_kill_pause_resume_targets(pair):
    client, runtime = pair
    assert client.kill("worker") == {"success": True, "killed": True, "agent_id": 9}
    assert runtime.last("ControlRequest") == {"target": {"Name": "worker"}}
    assert client.pause(agent_id=4) == {"success": True, "paused": True, "agent_id": 4}
    assert runtime.last("ControlRequest") == {"target": {"Id": 4}}
    assert client.resume(5) == {"success": True, "resumed": True, "agent_id": 5}
    assert [Opcode(f.opcode) for f in runtime.requests] == [Opcode.KILL, Opcode.PAUSE,
                                                            Opcode.RESUME]
    with pytest.raises(ValueError):
        client.kill()


def test_list_agents(pair):
    client, _ = pair
    assert client.list_agents() == [
        {"id": 2, "name": "a", "pid": 10, "state": "running", "uptime_ms": 1500,
         "level": "standard", "parent": 1, "exit_code": None, "signal": None, "oom_killed": False, "running": True},
        {"id": 3, "name": "b", "pid": 11, "state": "exited", "uptime_ms": 20,
         "level": None, "parent": None, "exit_code": None, "signal": 9, "oom_killed": True, "running": False},
    ]


def test_permissions(pair):
    client, runtime = pair
    assert client.get_permissions() == {"success": True, "agent_id": 7, "level": "standard",
                                        "ceiling": "unrestricted",
                                        "permissions": {"can_exec": False}}
    assert client.set_permissions(level="readonly", agent_id=3) == {
        "success": True, "agent_id": 3, "level": "readonly"}
    client.set_permissions({"can_exec": True})
    assert runtime.last("SetPermsRequest") == {"agent_id": None, "level": None,
                                               "permissions_json": '{"can_exec": true}'}


def test_audit_log(pair):
    client, runtime = pair
    assert client.get_audit_log(category="security", since_id=12) == {
        "success": True, "count": 1, "entries": [{
            "id": 1, "timestamp": 1700000000000, "category": "security", "event_type": "READ",
            "agent_id": 3, "agent_name": "x", "success": False,
            "details": {"path": "/etc/shadow"}}]}
    assert runtime.last("AuditQuery") == {"category": "security", "agent_id": None,
                                          "since_id": 12, "limit": 100}


def test_error_replies_map_to_names(pair):
    client, runtime = pair
    runtime.answer = lambda f: [error(f, 4, "path /etc/shadow is blocked")]
    denied = {"success": False, "error": "path /etc/shadow is blocked",
              "code": "permission_denied"}
    assert client.read_file("/etc/shadow") == denied
    assert client.exec("ls") == denied
    assert client.list_agents() == []
    assert client.echo("x") is None
    with pytest.raises(IOError, match="blocked"):
        client.read("/etc/shadow")
    runtime.answer = lambda f: [error(f, 99, "from the future")]
    assert client.kill("w") == {"success": False, "error": "from the future", "code": "99"}


def test_unserved_methods_send_their_opcode_and_report_unsupported(pair):
    client, runtime = pair
    result = client.tunnel_status()
    assert result == {"success": False, "error": "TUNNEL_STATUS is not served yet",
                      "code": "unsupported"}
    assert (runtime.requests[-1].opcode, runtime.requests[-1].payload) == (Opcode.TUNNEL_STATUS, b"")
    assert client.world_event("w1", "partition", params={})["code"] == "unsupported"
    assert client.register("me")["code"] == "unsupported"
    assert client.set_audit_config(log_security=True)["code"] == "unsupported"
    assert [Opcode(f.opcode) for f in runtime.requests[1:]] == [
        Opcode.WORLD_EVENT, Opcode.REGISTER, Opcode.SET_AUDIT_CONFIG]
    with pytest.raises(TypeError):
        client.world_join()  # the seed's signature is enforced


def test_reply_split_across_two_sends(pair):
    client, runtime = pair
    runtime.answer = lambda f: [(whole := answer(f)[0])[:20], whole[20:]]
    assert client.exec("echo hi")["stdout"] == "hi\n"


def test_replies_to_other_request_ids_arrive_first(pair):
    client, runtime = pair
    stray = lambda f, n: reply(f._replace(request_id=f.request_id + n), "Echo", {"data": b"no"})
    runtime.answer = lambda f: [stray(f, 100) + stray(f, 101) + answer(f)[0]]
    assert client.echo("yes") == "yes"
    assert client.echo("again") == "again"


def test_pipelined_requests_answered_out_of_order(pair):
    client, runtime = pair
    held = []

    def reverse(frame):
        held.append(frame)
        return [] if len(held) == 1 else answer(held[1]) + answer(held[0])
    runtime.answer = reverse
    first = client.send(Opcode.NOOP, encode("Echo", {"data": b"1"}))
    second = client.send(Opcode.NOOP, encode("Echo", {"data": b"2"}))
    assert decode("Echo", client.recv(first).payload) == {"data": b"1"}
    assert decode("Echo", client.recv(second).payload) == {"data": b"2"}
    with pytest.raises(ValueError):
        client.recv(second)


def test_connection_closed_by_the_runtime(pair):
    client, runtime = pair
    runtime.answer = lambda f: [runtime.sock.shutdown(socket.SHUT_RDWR)] and []
    with pytest.raises(CloveConnectionError, match="closed"):
        client.exec("ls")
    with pytest.raises(ConnectionError, match="not connected"):
        client.exec("ls")


def test_bad_frame_from_the_runtime_breaks_the_connection(pair):
    client, runtime = pair
    runtime.answer = lambda f: [b"AGNT" + bytes(12)]
    with pytest.raises(CloveConnectionError, match="bad frame"):
        client.hello()


def test_exit_says_goodbye_and_closes(pair):
    client, runtime = pair
    assert client.exit() is True
    assert runtime.requests[-1].opcode == Opcode.EXIT
    assert client.exit() is False


def test_clients_sharing_clove_fd_close_independently(pair):
    first, _ = pair
    with CloveClient() as second:
        assert second.echo("two") == "two"
    assert first.echo("one") == "one"


def serve_one(path):
    """A fake runtime behind a listening socket at ``path``; returns a function that stops it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(FakeRuntime(listener.accept()[0])))
    thread.start()

    def stop():
        thread.join(timeout=5)
        accepted[0].stop()
        listener.close()
        return accepted[0]
    return stop


def test_socket_path_from_env_and_aliases(env, tmp_path):
    path = str(tmp_path / "clove.sock")
    stop = serve_one(path)
    env.setenv("CLOVE_SOCKET", path)
    client = connect()
    assert client.socket_path == path and client.echo("hi") == "hi"
    client.close()
    stop()
    assert AgentOSClient is CloveClient
    with pytest.raises(CloveConnectionError, match="nowhere"):
        connect(str(tmp_path / "nowhere"))


def test_token_is_presented_on_connect(env, tmp_path):
    path = str(tmp_path / "clove.sock")
    stop = serve_one(path)
    env.setenv("CLOVE_TOKEN", "s3cret")
    env.setenv("CLOVE_AGENT_ID", "5")
    client = CloveClient(path)
    assert client.agent_id == 5
    with client:
        assert client.agent_id == 7
    runtime = stop()
    assert [decode("Hello", f.payload)["token"] for f in runtime.requests] == ["s3cret"]
