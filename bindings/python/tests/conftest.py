"""Fixtures of the end-to-end tests: the static ``clove-run`` (``CLOVE_RUN``, else built), a
``clove-run kernel`` serving a socket, and agent scripts written to a temporary directory."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SDK = ROOT / "bindings" / "python"


@pytest.fixture(scope="session")
def clove_run():
    path = os.environ.get("CLOVE_RUN")
    if not path:
        path = subprocess.run(["bash", str(ROOT / "scripts" / "build-static.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()
        path = str(ROOT / path)
    assert os.access(path, os.X_OK), path
    return path


def agent_script(tmp_path, name, body):
    script = tmp_path / name
    script.write_text(textwrap.dedent(body))
    return str(script)


def run_agent(clove_run, script, *args, timeout=30):
    cmd = [clove_run, "run", "--env", f"PYTHONPATH={SDK}", *args, "--", sys.executable, script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def kernel(clove_run, tmp_path):
    sock = tmp_path / "clove.sock"
    audit = tmp_path / "audit.jsonl"
    proc = subprocess.Popen([clove_run, "kernel", "--socket", str(sock), "--max-level", "unrestricted",
                             "--audit-log", str(audit)],
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SDK)})
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "kernel did not listen"
        time.sleep(0.02)
    yield sock
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not sock.exists(), "the socket file is removed on SIGTERM"
