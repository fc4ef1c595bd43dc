"""No leaks: every C allocation the binding receives is freed by its matching function, and Python
memory does not grow over many spawn/wait/list cycles."""

import gc
import tracemalloc
from collections import Counter

import pytest

import clove
from clove import _lib
from test_host_support import DEADLINE_S

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]

# Each C function handing out an allocation, and the function that must free it.
ALLOCATIONS = {
    "clove_runtime_options_new": "clove_runtime_options_free",
    "clove_spawn_options_new": "clove_spawn_options_free",
    "clove_runtime_list": "clove_agent_list_free",
    "clove_runtime_audit_log_json": "clove_string_free",
}


@pytest.fixture
def c_calls(clove_lib, monkeypatch):
    """Counts the calls of the allocating and freeing C functions."""
    lib, calls = _lib.load(), Counter()
    for name in [*ALLOCATIONS, *ALLOCATIONS.values()]:
        def counted(*args, _name=name, _function=getattr(lib, name)):
            calls[_name] += 1
            return _function(*args)
        monkeypatch.setattr(lib, name, counted)
    return calls


def one_cycle(runtime):
    """What a host does over and over: spawn, wait, read events, list, audit, callbacks."""
    agent = runtime.spawn("cycle", ["true"])
    assert agent.wait(DEADLINE_S).code == 0
    assert len(list(runtime.events(timeout=0))) == 2
    assert any(info.id == agent.id for info in runtime.list())
    assert runtime.audit_log(agent=agent)
    runtime.on_event(lambda event: None)
    runtime.on_event(None)


def test_every_allocation_is_freed_even_when_a_call_fails(c_calls):
    with clove.Runtime(exited_retention=4) as runtime:
        for _ in range(3):
            one_cycle(runtime)
        with pytest.raises(clove.InvalidArgument):
            runtime.spawn("bad", ["true"], level="root")
    with pytest.raises(clove.InvalidArgument):
        clove.Runtime(event_capacity=-1)
    for allocate, free in ALLOCATIONS.items():
        assert c_calls[allocate] > 0 and c_calls[allocate] == c_calls[free], (allocate, c_calls)


def test_python_memory_does_not_grow_over_many_cycles(clove_lib):
    with clove.Runtime(exited_retention=4, audit_capacity=64) as runtime:
        for _ in range(50):  # warm up: caches, interned strings, the first lazy imports
            one_cycle(runtime)
        gc.collect()
        objects_before = len(gc.get_objects())
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            cycles = 300
            for _ in range(cycles):
                one_cycle(runtime)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        objects_after = len(gc.get_objects())
    in_clove = [tracemalloc.Filter(True, f"{clove.__path__[0]}/*")]
    growth = sum(stat.size_diff for stat in after.filter_traces(in_clove).compare_to(
        before.filter_traces(in_clove), "filename"))
    total_growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # A leak of even one small object per cycle would be 300 objects and tens of KiB.
    assert growth < 2048, f"memory allocated in clove/ grew by {growth} bytes over {cycles} cycles"
    assert total_growth < 32 * 1024, f"Python memory grew by {total_growth} bytes"
    assert objects_after - objects_before < 100, (objects_before, objects_after)
