"""The SDK against the real runtime, through the static ``clove-run``: seed-style agents run unchanged.

``CLOVE_RUN`` names the binary (``scripts/test.sh`` sets it); without it the test builds it.
"""

import glob
import os
import subprocess
import sys
import time

import pytest

from clove_sdk import CloveClient
from conftest import SDK, agent_script, run_agent


def test_exit_code_passes_through(clove_run):
    assert subprocess.run([clove_run, "run", "--", "sh", "-c", "exit 42"]).returncode == 42
    assert subprocess.run([clove_run, "run", "--", "sh", "-c", "kill -9 $$"]).returncode == 128 + 9
    timed = subprocess.run([clove_run, "run", "--timeout", "0.5", "--", "sleep", "30"], timeout=10)
    assert timed.returncode == 124


def test_a_seed_style_agent_runs_unchanged(clove_run, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = agent_script(tmp_path, "seed_agent.py", f"""
        from clove_sdk import CloveClient

        with CloveClient() as client:
            assert client.echo("hello") == "hello"
            wrote = client.write_file("{work}/note.txt", "line 1\\n")
            assert wrote["success"] and wrote["bytes_written"] == 7, wrote
            assert client.write_file("{work}/note.txt", "line 2\\n", mode="append")["success"]
            assert client.read_file("{work}/note.txt")["content"] == "line 1\\nline 2\\n"
            shadow = client.read_file("/etc/shadow")
            assert shadow["success"] is False and "blocked" in shadow["error"], shadow
            assert client.exec("echo hi")["success"] is False
            raised = client.set_permissions(level="unrestricted")
            assert raised["success"] is False, raised
            perms = client.get_permissions()
            assert perms["success"] and perms["level"] == "standard"
            assert perms["permissions"]["can_exec"] is False
            metrics = client.get_agent_metrics()["metrics"]
            assert metrics["syscalls"]["NOOP"] == 1 and metrics["syscalls"]["READ"] == 2, metrics
            assert client.get_system_metrics()["metrics"]["memory"]["total"] > 0
            me = client.hello()["agent_id"]
            assert any(a["id"] == me and a["state"] == "running" for a in client.list_agents())
            print("seed agent ok")
    """)
    done = run_agent(clove_run, script)
    assert done.returncode == 0, done.stderr
    assert "seed agent ok" in done.stdout


def test_kernel_serves_exec_async_and_timeouts(kernel):
    with CloveClient(str(kernel)) as client:
        assert client.hello()["level"] == "unrestricted"
        ran = client.exec("echo direct")
        assert ran["success"] and ran["stdout"] == "direct\n" and ran["exit_code"] == 0
        failed = client.exec(["sh", "-c", "exit 3"])
        assert failed["success"] is False and failed["exit_code"] == 3
        accepted = client.exec("echo async-ok", async_=True)
        assert accepted == {"success": True, "async": True, "request_id": accepted["request_id"],
                            "status": "accepted"}
        results = []
        deadline = time.monotonic() + 5
        while not results and time.monotonic() < deadline:
            results = client.poll_async()["results"]
            time.sleep(0.05)
        assert len(results) == 1 and results[0]["request_id"] == accepted["request_id"]
        assert results[0]["opcode_name"] == "EXEC"
        assert results[0]["payload"]["stdout"] == "async-ok\n"
        assert client.poll_async()["count"] == 0
        started = time.monotonic()
        slow = client.exec("sleep 5", timeout=1)
        assert slow["success"] is False and slow["code"] == "timeout", slow
        assert time.monotonic() - started < 2


def test_parent_spawns_grants_and_kills_a_child(kernel, tmp_path):
    out = tmp_path / "child.out"
    child = agent_script(tmp_path, "child.py", f"""
        import json, time
        from clove_sdk import CloveClient

        with CloveClient() as client:
            while not client.get_permissions()["permissions"]["can_exec"]:
                time.sleep(0.05)
            results = {{
                "python": client.exec("python3 -c 'print(1)'"),
                "sudo": client.exec("sudo ls"),
                "ls": client.exec("ls"),
            }}
            with open("{out}", "w") as f:
                json.dump(results, f)
            time.sleep(60)
    """)
    with CloveClient(str(kernel)) as parent:
        spawned = parent.spawn("worker", child, level="standard", sandboxed=False, env={"PYTHONPATH": str(SDK)})
        assert spawned["success"], spawned
        granted = parent.set_permissions(agent_id=spawned["id"],
                                         permissions={"exec": ["python3"], "filesystem": {"write": ["/tmp/*"]}})
        assert granted["success"], granted
        deadline = time.monotonic() + 15
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        results = __import__("json").loads(out.read_text())
        assert results["python"]["success"] and results["python"]["stdout"] == "1\n"
        assert results["sudo"]["code"] == "permission_denied"
        assert results["ls"]["code"] == "permission_denied"
        names = {a["name"]: a for a in parent.list_agents()}
        assert names["worker"]["state"] == "running" and names["worker"]["parent"] == parent.hello()["agent_id"]
        assert parent.kill("worker")["killed"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if {a["name"]: a for a in parent.list_agents()}["worker"]["state"] == "exited":
                break
            time.sleep(0.05)
        assert {a["name"]: a for a in parent.list_agents()}["worker"]["signal"] == 9
        log = parent.get_audit_log(category="lifecycle")
        assert any(e["event_type"] == "SET_PERMS" for e in log["entries"]), log
    lines = [__import__("json").loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    events = [(e["category"], e["event"]) for e in lines]
    assert ("lifecycle", "SET_PERMS") in events and ("lifecycle", "KILLED") in events, events
    assert sum(1 for c, e in events if c == "security" and e == "EXEC") == 2, events


def _pids_running(argv):
    wanted = "\0".join(argv) + "\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline") as f:
                    if f.read() == wanted:
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("flags", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
def test_killing_the_host_kills_its_agents(clove_run, flags):
    if flags and os.geteuid() != 0:
        pytest.skip("SKIPPED: a sandboxed agent needs root for its cgroup")
    marker = ["sleep", "77.123"] if not flags else ["/usr/bin/sleep", "77.456"]
    host = subprocess.Popen([clove_run, "run", *flags, "--", *marker])
    deadline = time.monotonic() + 10
    while not _pids_running(marker):
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.02)
    host.kill()
    host.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _pids_running(marker):
        assert time.monotonic() < deadline, "the agent outlived its host"
        time.sleep(0.02)
    if flags:
        # The dead host could not remove its agent's cgroup; the next runtime that uses cgroups does.
        leftovers = lambda: [d for root in glob.glob("/sys/fs/cgroup/*/clove") + glob.glob("/sys/fs/cgroup/clove")
                             for d in os.listdir(root) if d.startswith(f"agent-{host.pid}-")]
        assert leftovers(), "expected the killed host's cgroup to be left behind"
        assert subprocess.run([clove_run, "run", "--sandbox", "--", "true"]).returncode == 0
        assert leftovers() == []
