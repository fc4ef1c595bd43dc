"""Shared fixtures and helpers of the host API tests (``test_host_*.py``); it holds no tests.

The tests load libclove from ``$CLOVE_LIB``. Without it, ``clove_lib`` builds the library with
``cargo build -q -p clove-ffi`` (honouring ``CARGO_TARGET_DIR``), and fails saying why if it cannot.
"""

import os
import pathlib
import subprocess
import time

import pytest

import clove

ROOT = pathlib.Path(__file__).resolve().parents[3]
PYTHON_DIR = ROOT / "bindings" / "python"
AGENTS_DIR = ROOT / "examples" / "agents"
# The sandbox finds Python at its canonical path; the host's python3 may be a pyenv shim.
SANDBOX_PYTHON = "/usr/bin/python3"
DEADLINE_S = 20  # generous: waits poll with this deadline, nothing asserts a duration

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="SKIPPED: sandboxes and cgroups need root; NOT a pass")


@pytest.fixture(scope="session")
def clove_lib():
    """The path of libclove.so, also exported as CLOVE_LIB for ``clove`` and subprocesses."""
    path = os.environ.get("CLOVE_LIB")
    if not path:
        build = subprocess.run(["cargo", "build", "-q", "-p", "clove-ffi"], cwd=ROOT,
                               capture_output=True, text=True)
        if build.returncode != 0:
            pytest.fail("CLOVE_LIB is unset and `cargo build -p clove-ffi` failed:\n"
                        + build.stderr)
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        path = str(target / "debug" / "libclove.so")
        os.environ["CLOVE_LIB"] = path
    assert os.path.isfile(path), f"CLOVE_LIB={path} is not a file"
    return path


@pytest.fixture
def rt(clove_lib):
    with clove.Runtime() as runtime:
        yield runtime


def wait_until(predicate, what, deadline_s=DEADLINE_S):
    """Polls ``predicate`` until it is true; fails naming ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def events_until(runtime, agent, kind):
    """Every event of ``agent`` up to and including the first of ``kind``."""
    seen = []
    for event in runtime.events(timeout=DEADLINE_S):
        if event.agent_id == agent.id:
            seen.append(event)
            if event.kind == kind:
                return seen
    pytest.fail(f"no {kind.name} event for {agent} within {DEADLINE_S} s; saw {seen}")


def process_alive(pid):
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
