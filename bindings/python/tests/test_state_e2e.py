"""The state store through the static ``clove-run kernel --state``: the seed's scenario S8 with two
SDK agents (STATE_CHANGED included), a session down a spawn tree, who may delete, caps, and an
acknowledged STORE that survives ``kill -9`` of the host."""

import signal
import subprocess
import time

import pytest

from clove_sdk import CloveClient
from conftest import SDK, agent_script


def start_kernel(clove_run, sock, state, max_level="standard"):
    """``clove-run kernel`` with its state in ``state``, once it listens."""
    if sock.exists():
        sock.unlink()
    proc = subprocess.Popen([clove_run, "kernel", "--socket", str(sock), "--max-level", max_level,
                             "--state", str(state)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "kernel did not listen"
        time.sleep(0.02)
    return proc


@pytest.fixture(params=["standard", "unrestricted"])
def state_kernel(request, clove_run, tmp_path):
    sock = tmp_path / "clove.sock"
    proc = start_kernel(clove_run, sock, tmp_path / "state.redb", request.param)
    yield str(sock)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def sleep_until(start, seconds):
    time.sleep(max(0.0, start + seconds - time.monotonic()))


def test_s8_scopes_ttl_and_nested_values(state_kernel):
    with CloveClient(state_kernel) as a, CloveClient(state_kernel) as b:
        assert b.subscribe(["STATE_CHANGED"])["success"]
        assert a.store("k", {"x": 1}, scope="agent")["success"]
        assert b.fetch("k") == {"success": True, "exists": False, "value": None, "scope": None}
        assert a.fetch("k") == {"success": True, "exists": True, "value": {"x": 1}, "scope": "agent"}

        assert a.store("g", 5, scope="global")["success"]
        assert b.fetch("g")["value"] == 5
        # B hears of the global key, and not of A's private one.
        events = b.poll_events()["events"]
        assert [(e["type"], e["data"]) for e in events] == [
            ("STATE_CHANGED", {"key": "g", "scope": "global", "action": "store"})], events
        assert events[0]["source_agent_id"] == a.hello()["agent_id"]

        start = time.monotonic()
        assert a.store("t", "v", ttl=1)["success"]
        sleep_until(start, 0.5)
        assert b.fetch("t")["exists"]
        assert "t" in b.list_keys("t")["keys"]
        sleep_until(start, 1.5)
        assert b.fetch("t")["exists"] is False
        assert "t" not in b.list_keys("t")["keys"]

        nested = {"a": [1, 2.5, {"b": None, "c": [True, "ü\n\"q\""]}], "n": -12345678901234,
                  "e": {}, "big": 2**63}
        assert a.store("nested", nested)["success"]
        assert b.fetch("nested")["value"] == nested


@pytest.mark.parametrize("state_kernel", ["unrestricted"], indirect=True)
def test_a_session_is_shared_with_spawned_children_only(state_kernel, tmp_path):
    child = agent_script(tmp_path, "child.py", """
        from clove_sdk import CloveClient

        with CloveClient() as c:
            plan = c.fetch("plan")
            mine = c.fetch("mine")
            c.store("reply", {"saw": plan["value"], "scope": plan["scope"],
                              "saw_private": mine["exists"]}, scope="session")
    """)
    with CloveClient(state_kernel) as parent, CloveClient(state_kernel) as stranger:
        assert parent.store("plan", {"step": 1}, scope="session")["success"]
        assert parent.store("mine", 1, scope="agent")["success"]
        spawned = parent.spawn("child", child, sandboxed=False, env={"PYTHONPATH": str(SDK)})
        assert spawned["success"], spawned
        deadline = time.monotonic() + 15
        while not parent.fetch("reply")["exists"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parent.fetch("reply") == {"success": True, "exists": True, "scope": "session",
                                         "value": {"saw": {"step": 1}, "scope": "session",
                                                   "saw_private": False}}
        assert stranger.fetch("plan")["exists"] is False
        assert stranger.fetch("reply")["exists"] is False
        assert stranger.list_keys()["keys"] == []


@pytest.mark.parametrize("state_kernel", ["standard"], indirect=True)
def test_deletes_reach_only_what_the_caller_sees_and_caps_are_clear(state_kernel):
    with CloveClient(state_kernel) as a, CloveClient(state_kernel) as b:
        assert a.store("k", "a's", scope="agent")["success"]
        assert b.delete_key("k") == {"success": True, "deleted": False, "scope": None}
        assert a.fetch("k")["value"] == "a's"
        assert a.store("shared", 1)["success"]
        assert b.delete_key("shared") == {"success": True, "deleted": True, "scope": "global"}
        assert a.fetch("shared")["exists"] is False

        too_big = a.store("big", "x" * (256 << 10))
        assert too_big["success"] is False and too_big["code"] == "limit_exceeded", too_big
        assert "cap of 262144" in too_big["error"]
        empty = a.store("", 1)
        assert empty["success"] is False and empty["code"] == "invalid_argument", empty

        assert b.set_permissions(level="readonly")["success"]
        refused = b.store("g", 1)
        assert refused["success"] is False and refused["code"] == "permission_denied", refused
        assert b.fetch("k")["success"]


def test_an_acknowledged_store_survives_kill_9_of_the_host(clove_run, tmp_path):
    sock, state = tmp_path / "clove.sock", tmp_path / "state.redb"
    host = start_kernel(clove_run, sock, state)
    with CloveClient(str(sock)) as agent:
        stored = agent.store("durable", {"n": [1, 2, 3], "s": "ü"})
        assert stored["success"], stored
        assert agent.store("expiring", 1, ttl=3600)["success"]
        expires = agent.fetch("expiring")
    host.kill()  # SIGKILL: no shutdown, no flush
    host.wait(timeout=10)

    host = start_kernel(clove_run, sock, state)
    try:
        with CloveClient(str(sock)) as agent:
            assert agent.fetch("durable") == {"success": True, "exists": True, "scope": "global",
                                              "value": {"n": [1, 2, 3], "s": "ü"}}
            assert agent.list_keys()["keys"] == ["durable", "expiring"]
            assert agent.fetch("expiring")["exists"] and expires["exists"]
    finally:
        host.send_signal(signal.SIGTERM)
        assert host.wait(timeout=10) == 0


def test_a_damaged_database_stops_the_kernel_with_a_clear_error(clove_run, tmp_path):
    state = tmp_path / "state.redb"
    state.write_bytes(b"not a database" * 100)
    done = subprocess.run([clove_run, "kernel", "--socket", str(tmp_path / "s.sock"),
                           "--state", str(state)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 125, done
    assert f"clove-run: opening the state database {state}" in done.stderr, done.stderr
