"""The host API on plain (unsandboxed) agents: the runtime's life, spawn options, exits, control,
listing, metrics, the audit log and errors."""

import gc
import json
import threading
import warnings

import pytest

import clove
from clove import AgentState, EventKind, Stdio
from test_host_support import DEADLINE_S, events_until, process_alive, wait_until

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]


def sleeper(runtime, name="sleeper", **options):
    return runtime.spawn(name, ["sleep", "60"], stdio=Stdio.NULL, **options)


def test_a_runtime_opens_with_every_option_and_closes_once(clove_lib, tmp_path):
    audit = tmp_path / "audit.jsonl"
    runtime = clove.Runtime(home=tmp_path, max_payload=1 << 20, audit_capacity=100,
                            event_capacity=64, exited_retention=8, audit_file=audit)
    assert not runtime.closed and clove.library_version()
    runtime.spawn("true", ["true"]).wait(DEADLINE_S)
    runtime.close()
    assert runtime.closed
    runtime.close()  # a second close does nothing
    with pytest.raises(ValueError, match="closed"):
        runtime.list()
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {"category": "lifecycle", "event": "SPAWNED"}.items() <= entries[0].items()


def test_a_state_file_is_kept_and_a_damaged_one_refused(clove_lib, tmp_path):
    state = tmp_path / "state.redb"
    with clove.Runtime(state_path=state):
        assert state.stat().st_mode & 0o777 == 0o600
    state.write_bytes(b"not a database")
    with pytest.raises(clove.IoError, match="state.redb"):
        clove.Runtime(state_path=state)


def test_exit_codes_and_signals(rt):
    assert rt.spawn("exit42", ["sh", "-c", "exit 42"]).wait(DEADLINE_S) == clove.Exit(42, None)
    assert rt.spawn("ok", ["true"]).wait(DEADLINE_S).code == 0
    killed = rt.spawn("self-kill", ["sh", "-c", "kill -9 $$"]).wait(DEADLINE_S)
    assert killed.code is None and killed.signal == 9 and not killed.oom_killed


def test_env_cwd_and_stdio_file(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("HOST_SECRET", "leaked")
    log = tmp_path / "agent.log"
    agent = rt.spawn("env", ["sh", "-c", 'echo "$GREETING from $PWD${HOST_SECRET}"'],
                     env={"GREETING": "hello"}, cwd=tmp_path, stdio=log)
    assert agent.wait(DEADLINE_S).code == 0
    assert log.read_text() == f"hello from {tmp_path}\n", "the host's environment is not passed on"


def test_kill_ends_an_agent_with_sigkill(rt):
    agent = sleeper(rt)
    with pytest.raises(clove.Timeout):
        agent.wait(timeout=0.05)
    agent.kill()
    assert agent.wait(DEADLINE_S).signal == 9
    assert agent.info().state == AgentState.EXITED


def test_pause_and_resume(rt):
    agent = sleeper(rt)
    agent.pause()
    assert agent.info().state == AgentState.PAUSED
    agent.resume()
    assert agent.info().state == AgentState.RUNNING
    kinds = [event.kind for event in events_until(rt, agent, EventKind.RESUMED)]
    assert kinds == [EventKind.SPAWNED, EventKind.PAUSED, EventKind.RESUMED]
    agent.kill()
    agent.wait(DEADLINE_S)
    with pytest.raises(clove.Conflict, match="clove_runtime_pause"):
        agent.pause()


def test_list_copies_every_agent(rt):
    running = sleeper(rt, level="readonly")
    ended = rt.spawn("ended", ["true"])
    ended.wait(DEADLINE_S)
    agents = {info.id: info for info in rt.list()}
    assert agents[running.id].name == "sleeper" and agents[running.id].level == "readonly"
    assert agents[running.id].state == AgentState.RUNNING and agents[running.id].exit is None
    assert process_alive(agents[running.id].pid) and agents[running.id].parent == 0
    assert agents[ended.id].state == AgentState.EXITED and agents[ended.id].exit.code == 0


def test_metrics_of_a_plain_agent(rt):
    metrics = sleeper(rt).metrics()
    assert metrics.rss_bytes > 0 and metrics.threads == 1 and metrics.syscalls == 0
    assert metrics.cgroup is None, "an agent without limits or sandbox has no cgroup"


def test_unknown_ids_raise_not_found(rt):
    ended = rt.spawn("ended", ["true"])
    ended.wait(DEADLINE_S)
    stale = ended.id + (1 << 32)  # the same slot, another generation
    for call in (rt.kill, rt.pause, rt.resume, rt.wait, rt.metrics):
        with pytest.raises(clove.NotFound) as raised:
            call(stale)
        assert isinstance(raised.value, LookupError)
        assert raised.value.status == clove.Status.NOT_FOUND
        assert "not found" in str(raised.value)


@pytest.mark.parametrize("options, message", [
    ({"level": "root"}, "unknown level"),
    ({"restart": "sometimes"}, "unknown restart policy"),
    ({"profile": "reckless"}, "unknown profile"),
    ({"mounts": [("relative", "/data")]}, "absolute"),
    ({"env": {"A=B": "c"}}, "environment name"),
    ({"stdio": Stdio.FILE}, "`path`"),
    ({"limits": clove.Limits(memory_bytes=-1)}, "memory_bytes"),
    ({"cwd": "/tmp\0/etc"}, "NUL"),
])
def test_bad_options_raise_invalid_argument(rt, options, message):
    with pytest.raises(clove.InvalidArgument, match=message) as raised:
        rt.spawn("bad", ["true"], **options)
    assert isinstance(raised.value, ValueError)
    assert rt.list() == [], "nothing was started"


def test_bad_argv_and_runtime_options(rt, clove_lib):
    with pytest.raises(clove.InvalidArgument, match="clove_runtime_spawn"):
        rt.spawn("empty", [])
    with pytest.raises(clove.InvalidArgument, match="one string"):
        rt.spawn("shell-line", "sleep 10")
    with pytest.raises(clove.CloveError):
        rt.spawn("missing", ["/nonexistent/clove-agent"])
    with pytest.raises(clove.InvalidArgument, match="max_payload"):
        clove.Runtime(max_payload=1 << 40)
    with pytest.raises(clove.InvalidArgument, match="unknown level"):
        rt.listen("/tmp/unused.sock", max_level="root")


def test_listen_makes_a_private_socket(rt, tmp_path):
    path = tmp_path / "clove.sock"
    rt.listen(path, max_level="readonly", token="secret")
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_audit_log_is_parsed(rt):
    agent = sleeper(rt)
    agent.kill()
    agent.wait(DEADLINE_S)
    entries = rt.audit_log(category="lifecycle", agent=agent)
    assert sorted(entry["event"] for entry in entries) == ["EXITED", "KILLED", "SPAWNED"]
    exited = next(entry for entry in entries if entry["event"] == "EXITED")
    assert exited["agent_name"] == "sleeper" and exited["details"]["signal"] == 9
    assert rt.audit_log(agent=agent, since_id=entries[-1]["id"]) == []
    assert len(rt.audit_log(limit=1)) == 1


def test_the_runtime_as_a_context_manager_kills_its_agents(clove_lib):
    with clove.Runtime() as runtime:
        agents = [sleeper(runtime, f"sleeper{i}") for i in range(3)]
        pids = [agent.info().pid for agent in agents]
        assert all(process_alive(pid) for pid in pids)
    wait_until(lambda: not any(process_alive(pid) for pid in pids), "agents to die")


def test_an_agent_as_a_context_manager_is_killed_on_leaving(rt):
    with sleeper(rt) as agent:
        pid = agent.info().pid
    assert agent.info().exit.signal == 9 and not process_alive(pid)
    with rt.spawn("done", ["true"]) as done:
        done.wait(DEADLINE_S)
    assert done.info().exit.code == 0, "an agent that has ended keeps its own exit"


def test_an_unclosed_runtime_warns_and_kills_its_agents_when_collected(clove_lib):
    runtime = clove.Runtime()
    pid = sleeper(runtime).info().pid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del runtime
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    wait_until(lambda: not process_alive(pid), "the agent to die")


def test_close_from_another_thread_ends_blocked_waits(clove_lib):
    runtime = clove.Runtime()
    agent = sleeper(runtime)
    outcomes = {}

    def wait_forever():
        try:
            agent.wait()
        except ValueError as error:
            outcomes["wait"] = str(error)

    def read_events():
        outcomes["events"] = [event.kind for event in runtime.events()]

    threads = [threading.Thread(target=wait_forever), threading.Thread(target=read_events)]
    for thread in threads:
        thread.start()
    wait_until(lambda: runtime._calls == 2, "both threads to block in the runtime")
    runtime.close()
    for thread in threads:
        thread.join(DEADLINE_S)
        assert not thread.is_alive()
    assert outcomes == {"wait": "the runtime is closed", "events": [EventKind.SPAWNED]}


def test_many_threads_share_one_runtime(rt):
    exits = {}

    def run(code):
        exits[code] = rt.spawn(f"t{code}", ["sh", "-c", f"exit {code}"]).wait(DEADLINE_S).code

    threads = [threading.Thread(target=run, args=(code,)) for code in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert exits == {code: code for code in range(8)}

