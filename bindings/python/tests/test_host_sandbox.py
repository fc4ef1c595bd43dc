"""Sandboxed agents through the host API: a Python agent on clove_sdk, mounts and profiles, the
cgroup's OOM kill and figures, warm sandboxes. Needs root (namespaces and cgroups)."""

import os
import pathlib
import tempfile
import textwrap

import pytest

import clove
from clove import EventKind, Limits, Mount, Stdio
from test_host_support import (AGENTS_DIR, DEADLINE_S, PYTHON_DIR, SANDBOX_PYTHON, events_until,
                               needs_root)

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]

pytestmark = needs_root

SDK_ENV = {"PYTHONPATH": str(PYTHON_DIR)}

ECHO_AGENT = """\
    from clove_sdk import CloveClient

    with CloveClient() as client:
        me = client.hello()["agent_id"]
        answered = client.echo("ping") == "ping"
    print(f"agent {me} {'answered' if answered else 'did not answer'}", flush=True)
"""


@pytest.fixture
def agent_dir():
    """A directory the sandboxed agent (uid nobody on the host) can read: pytest's tmp_path is
    private to root."""
    with tempfile.TemporaryDirectory(prefix="clove-host-test-") as path:
        os.chmod(path, 0o755)
        yield pathlib.Path(path)


def python_agent(directory, body):
    script = directory / "agent.py"
    script.write_text(textwrap.dedent(body))
    return [SANDBOX_PYTHON, str(script)]


def test_a_sandboxed_python_agent_talks_to_the_runtime(rt, agent_dir, tmp_path):
    log = tmp_path / "agent.log"
    agent = rt.spawn("echo", python_agent(agent_dir, ECHO_AGENT), sandboxed=True, env=SDK_ENV,
                     stdio=log)
    assert agent.wait(DEADLINE_S) == clove.Exit(0, None)
    assert log.read_text() == f"agent {agent.id} answered\n"


def test_a_mount_is_shown_read_only_under_a_profile(rt, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("hi")
    script = 'test "$(cat /data/note)" = hi && ! touch /data/new 2>/dev/null'
    agent = rt.spawn("reader", ["/bin/sh", "-c", script], profile="restrictive",
                     mounts=[Mount(shared, "/data", read_only=True)], stdio=Stdio.NULL)
    assert agent.wait(DEADLINE_S).code == 0
    assert sorted(path.name for path in shared.iterdir()) == ["note"]


def test_a_memory_hog_is_oom_killed_alone(rt):
    hog = rt.spawn("hog", [SANDBOX_PYTHON, str(AGENTS_DIR / "hog.py")], sandboxed=True,
                   limits=Limits(memory_bytes=50 << 20), stdio=Stdio.NULL)
    sibling = rt.spawn("sibling", ["sleep", "60"], sandboxed=True, stdio=Stdio.NULL)
    kinds = [event.kind for event in events_until(rt, hog, EventKind.EXITED)]
    assert kinds == [EventKind.SPAWNED, EventKind.OOM, EventKind.EXITED]
    assert hog.wait(DEADLINE_S).oom_killed
    with pytest.raises(clove.Timeout):
        sibling.wait(timeout=0.1)


def test_a_sandboxed_agent_has_cgroup_figures(rt):
    agent = rt.spawn("sleeper", ["sleep", "60"], sandboxed=True,
                     limits=Limits(memory_bytes=64 << 20, max_pids=16), stdio=Stdio.NULL)
    cgroup = agent.metrics().cgroup
    assert cgroup is not None and cgroup.memory_current > 0 and cgroup.pids_current >= 1
    assert cgroup.oom_kills == 0


def test_prewarmed_sandboxes_serve_spawns_of_their_shape(rt, agent_dir, tmp_path):
    argv = python_agent(agent_dir, ECHO_AGENT)
    shape = {"sandboxed": True, "env": SDK_ENV, "stdio": tmp_path / "agent.log"}
    rt.prewarm(2, "warm", argv, **shape)
    agents = [rt.spawn("warm", argv, **shape) for _ in range(2)]
    assert [agent.wait(DEADLINE_S).code for agent in agents] == [0, 0]
    lines = sorted((tmp_path / "agent.log").read_text().splitlines())
    assert lines == sorted(f"agent {agent.id} answered" for agent in agents)
    with pytest.raises(clove.InvalidArgument, match="sandbox"):
        rt.prewarm(1, "plain", ["true"])
