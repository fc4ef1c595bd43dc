"""IPC and events between real agents through ``clove-run``: the seed's scenario S7 (named send,
reply routing by ``from``, a duplicate name refused, broadcast count) and the seed's event calls."""

import time

from clove_sdk import CloveClient
from conftest import SDK, agent_script

WORKER = """
    from clove_sdk import CloveClient

    with CloveClient() as client:
        assert client.register_name("ipc-worker")["success"]
        client.send_message("ready", to_name="ipc-main")
        while True:
            got = client.recv_messages(wait=10)
            for m in got["messages"]:
                if m["message"] == "stop":
                    raise SystemExit(0)
                client.send_message({"status": "processed", "original": m["message"]}, to=m["from"])
"""

SQUATTER = """
    from clove_sdk import CloveClient

    with CloveClient() as client:
        taken = client.register_name("ipc-worker")
        assert client.register_name("ipc-third")["success"]
        client.send_message({"taken": taken}, to_name="ipc-main")
        client.recv_messages(wait=10)
"""


def wait_for(client, predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for m in client.recv_messages(wait=1)["messages"]:
            if predicate(m):
                return m
    raise AssertionError("no such message arrived")


def test_named_send_reply_routing_duplicates_and_broadcast(kernel, tmp_path):
    worker = agent_script(tmp_path, "worker.py", WORKER)
    squatter = agent_script(tmp_path, "squatter.py", SQUATTER)
    env = {"PYTHONPATH": str(SDK)}
    with CloveClient(str(kernel)) as main:
        assert main.register_name("ipc-main")["success"]
        spawned = main.spawn("worker", worker, sandboxed=False, env=env)
        assert spawned["success"], spawned
        wait_for(main, lambda m: m["message"] == "ready")

        task = {"task": "process", "data": [1, 2, 3]}
        sent = main.send_message(task, to_name="ipc-worker")
        assert sent == {"success": True, "delivered_to": spawned["id"]}, "one id space: SPAWN's id"
        reply = wait_for(main, lambda m: m["from_name"] == "ipc-worker")
        assert reply["from"] == spawned["id"]
        assert reply["message"] == {"status": "processed", "original": task}

        assert main.spawn("squatter", squatter, sandboxed=False, env=env)["success"]
        refused = wait_for(main, lambda m: "taken" in m["message"])["message"]["taken"]
        assert refused["success"] is False and "already registered" in refused["error"], refused

        # Three named agents: a broadcast without itself reaches the other two.
        assert main.broadcast({"note": "hello"}, include_self=False) == {
            "success": True, "delivered_count": 2, "full": []}
        nobody = main.send_message("x", to_name="nobody")
        assert nobody["success"] is False and nobody["code"] == "not_found"
        main.send_message("stop", to_name="ipc-worker")


def test_events_subscribe_emit_poll(kernel, tmp_path):
    with CloveClient(str(kernel)) as watcher, CloveClient(str(kernel)) as emitter:
        assert watcher.subscribe(["AGENT_SPAWNED", "AGENT_EXITED", "CUSTOM"])["success"]
        assert emitter.emit_event("build_done", {"ok": True})["delivered"] == 1
        short = agent_script(tmp_path, "short.py", "raise SystemExit(4)\n")
        spawned = watcher.spawn("short", short, sandboxed=False)
        events = []
        deadline = time.monotonic() + 10
        while len(events) < 3 and time.monotonic() < deadline:
            events += watcher.poll_events(max_events=10)["events"]
            time.sleep(0.05)
        assert [e["type"] for e in events] == ["CUSTOM", "AGENT_SPAWNED", "AGENT_EXITED"], events
        assert events[0]["custom_type"] == "build_done" and events[0]["data"] == {"ok": True}
        assert events[2]["source_agent_id"] == spawned["id"] and events[2]["data"]["exit_code"] == 4
        forged = emitter.emit_event("AGENT_EXITED", {})
        assert forged["success"] is False and forged["code"] == "permission_denied"
        assert watcher.unsubscribe(all=True) == {"success": True, "subscribed": []}


def test_audit_config_through_the_sdk(kernel):
    with CloveClient(str(kernel)) as admin:
        changed = admin.set_audit_config(log_syscalls=True, max_entries=500)
        assert changed["success"] and changed["config"]["log_syscalls"] is True
        assert changed["config"]["max_entries"] == 500 and changed["config"]["log_security"] is True
        admin.echo("logged")
        entries = admin.get_audit_log(category="syscall")["entries"]
        assert [e["event_type"] for e in entries][-1] == "NOOP"
        try:
            admin.set_audit_config(log_everything=True)
        except TypeError as e:
            assert "log_everything" in str(e)
        else:
            raise AssertionError("an unknown category is refused before it is sent")


def test_record_then_replay_gives_identical_results(kernel, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("recorded world")
    with CloveClient(str(kernel)) as first:
        assert first.start_recording(include_exec=True)["recording"] is True
        live = (first.read_file(str(data)), first.exec("echo $(date +%N)"))
        stopped = first.stop_recording()
        assert stopped["recording"] is False and stopped["entry_count"] == 2
        recording = first.get_recording_status(export=True)["recording_data"]
    data.write_text("a changed world")
    with CloveClient(str(kernel)) as second:
        assert second.start_replay(recording)["total"] == 2
        replayed = (second.read_file(str(data)), second.exec("echo $(date +%N)"))
        assert replayed == live and replayed[0]["content"] == "recorded world"
        assert second.get_replay_status() == {"success": True, "active": True, "position": 2,
                                              "total": 2, "diverged": None}
