"""Lifecycle events: the iterator, and the callback that runs on the reactor thread."""

import logging
import queue
import threading

import pytest

import clove
from clove import EventKind, Restart, Stdio
from test_host_support import DEADLINE_S, PYTHON_DIR, events_until, process_alive, wait_until

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]


def test_the_iterator_yields_each_step_then_stops(rt):
    agent = rt.spawn("short", ["sh", "-c", "exit 3"])
    steps = events_until(rt, agent, EventKind.EXITED)
    assert [event.kind for event in steps] == [EventKind.SPAWNED, EventKind.EXITED]
    assert steps[0].pid > 0 and steps[0].exit is None
    assert steps[1].exit == clove.Exit(3, None)
    assert steps[0].timestamp_ms <= steps[1].timestamp_ms
    assert list(rt.events(timeout=0.05)) == [], "no event came: the iterator ends"
    assert rt.next_event(timeout=0) is None


def test_restart_then_escalation(rt):
    agent = rt.spawn("flaky", ["sh", "-c", "exit 1"], restart=Restart("on-failure", 1, 60))
    steps = events_until(rt, agent, EventKind.ESCALATED)
    restarting = [event for event in steps if event.kind == EventKind.RESTARTING]
    assert [event.attempt for event in restarting] == [1]
    assert [event.kind for event in steps].count(EventKind.SPAWNED) == 2


def test_the_callback_gets_every_event_on_the_reactor_thread(rt):
    received = queue.Queue()
    rt.on_event(lambda event: received.put((threading.get_ident(), event)))
    agent = rt.spawn("short", ["sh", "-c", "exit 5"])
    thread, spawned = received.get(timeout=DEADLINE_S)
    _, exited = received.get(timeout=DEADLINE_S)
    assert thread != threading.get_ident()
    assert (spawned.agent_id, spawned.kind) == (agent.id, EventKind.SPAWNED)
    assert (exited.kind, exited.exit.code) == (EventKind.EXITED, 5)
    polled = events_until(rt, agent, EventKind.EXITED)
    assert polled == [spawned, exited], "events queue for the iterator as well"


def test_removing_or_replacing_the_callback_stops_it_at_once(rt):
    old, new = [], queue.Queue()
    rt.on_event(old.append)
    rt.on_event(new.put)
    rt.spawn("one", ["true"])
    assert new.get(timeout=DEADLINE_S).kind == EventKind.SPAWNED
    rt.on_event(None)
    calls_after_removal = new.qsize()
    two = rt.spawn("two", ["true"])
    events_until(rt, two, EventKind.EXITED)
    assert old == [] and new.qsize() == calls_after_removal


def test_a_raising_callback_is_logged_and_events_keep_coming(rt, caplog):
    seen = queue.Queue()

    def flaky(event):
        seen.put(event)
        raise KeyError("boom")

    rt.on_event(flaky)
    with caplog.at_level(logging.ERROR, logger="clove"):
        rt.spawn("short", ["true"])
        assert seen.get(timeout=DEADLINE_S).kind == EventKind.SPAWNED
        assert seen.get(timeout=DEADLINE_S).kind == EventKind.EXITED
        wait_until(lambda: len(caplog.records) == 2, "both errors to be logged")
    assert "KeyError: 'boom'" in caplog.text


def test_a_callback_calling_its_runtime_is_refused_not_deadlocked(rt, caplog):
    refused = queue.Queue()

    def calls_back(event):
        try:
            rt.list()
        except RuntimeError as error:
            refused.put(str(error))

    rt.on_event(calls_back)
    rt.spawn("short", ["true"])
    assert "must not call its runtime" in refused.get(timeout=DEADLINE_S)
    assert rt.list(), "the runtime still serves other threads"


def test_a_runtime_collected_inside_its_callback_is_freed_without_deadlock(clove_lib):
    holder = [clove.Runtime()]

    def on_event(event):
        if event.kind == EventKind.EXITED:
            holder.clear()  # the last reference: the runtime is collected on the reactor thread

    with pytest.warns(ResourceWarning, match="unclosed"):
        holder[0].on_event(on_event)
        pid = holder[0].spawn("sleeper", ["sleep", "60"], stdio=Stdio.NULL).info().pid
        holder[0].spawn("short", ["sleep", "0.2"])  # this thread holds no reference when it ends
        wait_until(lambda: not process_alive(pid), "the runtime to be freed and its agent killed")


def test_subscribed_bus_events_come_with_their_name_and_data(rt):
    rt.subscribe("deploy_done")
    with pytest.raises(clove.InvalidArgument):
        rt.subscribe("")
    code = ("from clove_sdk import CloveClient\n"
            "with CloveClient() as c:\n"
            "    c.emit_event('ignored', {})\n"
            "    c.emit_event('deploy_done', {'v': [1, 2]})\n")
    agent = rt.spawn("emitter", ["python3", "-c", code], env={"PYTHONPATH": str(PYTHON_DIR)},
                     stdio=Stdio.NULL)
    steps = events_until(rt, agent, EventKind.CUSTOM)
    assert (steps[-1].name, steps[-1].data) == ("deploy_done", {"v": [1, 2]})
    assert agent.wait(timeout=DEADLINE_S).code == 0
    rt.unsubscribe("deploy_done")
