"""A hostile Python agent for Clove's escape suite: it tries to get out through the runtime's own
system calls (READ, WRITE, SET_PERMS, SPAWN, EXEC over its channel) and through the network, and
prints one JSON line per attempt: {"attempt": "...", "escaped": bool, "detail": "..."}.

It runs sandboxed at level `standard`. Hints from the test, in the environment:
  CLOVE_ESCAPE_CANARY  a host directory outside the sandbox (mode 0700, owned by another uid) with a
                       file `host-only.txt`: a stand-in for another user's home;
  /work/.host_work     (written by the test after the spawn) the host path of this agent's /work, so
                       symlinks made in /work can be handed to READ/WRITE, which resolve on the host.
"""
import ctypes
import errno
import json
import os
import socket
import sys
import time

from clove_sdk import CloveClient
from clove_sdk.codec import Opcode

CANARY = os.environ.get("CLOVE_ESCAPE_CANARY", "/nonexistent")
MARK = "clove-escape-canary"  # the content of the canary file


def report(attempt, escaped, detail):
    """One line of the suite's table."""
    print(json.dumps({"attempt": attempt, "escaped": bool(escaped), "detail": str(detail)}), flush=True)


def os_error(call, e):
    name = errno.errorcode.get(e.errno, "E?") if e.errno else type(e).__name__
    return f"{call}: {name} ({e.strerror or e})"


def refused(result):
    """The runtime's refusal, as 'policy: <code>: <message>'."""
    err = result.get("error", "")
    code = result.get("code", "")
    return f"policy: {code} {err}".replace("  ", " ").strip()


def sdk_read(client, attempt, path, secret=None):
    """READ through the runtime: escaped when content comes back (containing `secret` if given)."""
    r = client.read_file(path)
    if r.get("success"):
        data = r["data"]
        got = secret is None or secret.encode() in data
        report(attempt, got and len(data) > 0, f"READ returned {len(data)} bytes")
    else:
        report(attempt, False, refused(r))


def sdk_write(client, attempt, path, host_check):
    """WRITE through the runtime: escaped when the runtime says it wrote."""
    r = client.write_file(path, "written by a sandboxed agent\n")
    if r.get("success"):
        report(attempt, True, f"WRITE wrote {r['bytes_written']} bytes to host {host_check}")
    else:
        report(attempt, False, refused(r))


def host_work():
    """The host path of /work, written there by the test; waits a little for it."""
    for _ in range(100):
        try:
            return open("/work/.host_work").read().strip()
        except OSError:
            time.sleep(0.05)
    return "/work"


def runtime_memory(client):
    """READ /proc/self/mem on the host side: /proc/self there is the runtime process."""
    attempt = "READ the runtime's memory (/proc/self/mem on the host)"
    r = client.read_file("/proc/self/maps")
    if not r.get("success"):
        report(attempt, False, refused(r) + " (maps)")
        return
    start = None
    for line in r["content"].splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].startswith("r") and "[vvar" not in line:
            start = int(fields[0].split("-")[0], 16)
            break
    request = {"path": "/proc/self/mem", "offset": start or 0, "max_bytes": 64}
    reply = client._rpc(client_opcode("READ"), "ReadRequest", request, "ReadReply")
    if reply.get("success") is False:
        report(attempt, False, refused(reply) + " (maps were readable)")
    else:
        report(attempt, len(reply.get("content", b"")) > 0,
               f"read {len(reply.get('content', b''))} bytes of the runtime at {start:#x}")


def client_opcode(name):
    return getattr(Opcode, name)


def network():
    try:
        socket.getaddrinfo("example.com", 443)
        report("DNS resolution of example.com", True, "resolved")
    except OSError as e:
        report("DNS resolution of example.com", False, f"getaddrinfo: {e}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"\0" * 12, ("1.1.1.1", 53))
        report("UDP datagram to 1.1.1.1:53", True, "sent")
    except OSError as e:
        report("UDP datagram to 1.1.1.1:53", False, os_error("sendto", e))
    finally:
        s.close()


def ctypes_unshare():
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
    r = libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)
    e = ctypes.get_errno()
    report("unshare(CLONE_NEWUSER|CLONE_NEWNS) from Python", r == 0,
           "succeeded" if r == 0 else f"unshare: {errno.errorcode.get(e, e)} ({os.strerror(e)})")


def main():
    network()
    ctypes_unshare()
    try:
        open("/etc/shadow").read()
        report("Python open('/etc/shadow')", True, "read it")
    except OSError as e:
        report("Python open('/etc/shadow')", False, os_error("open", e))
    with CloveClient() as client:
        work = host_work()
        sdk_read(client, "READ /etc/shadow", "/etc/shadow")
        sdk_read(client, "READ /work/../etc/shadow", "/work/../etc/shadow")
        sdk_read(client, "READ ../../../../../etc/shadow (relative)", "../../../../../etc/shadow")
        sdk_read(client, "READ ~/.ssh/id_rsa of the runtime's user", os.path.join(
            os.environ.get("CLOVE_ESCAPE_HOME", "/root"), ".ssh/id_rsa"))
        os.symlink("/etc/shadow", "/work/shadow-link")
        sdk_read(client, "READ a symlink in /work to /etc/shadow", f"{work}/shadow-link")
        os.symlink("/etc", "/work/etc-dir")
        sdk_read(client, "READ through a /work symlink to /etc (etc-dir/shadow)", f"{work}/etc-dir/shadow")
        sdk_write(client, "WRITE /etc/passwd through a /work symlink to /etc", f"{work}/etc-dir/passwd",
                  "/etc/passwd")
        # Host paths no blocked pattern names: level standard grants them through the runtime (which
        # reads and writes as its own user, root in the test), so these show what the level lets a
        # sandboxed agent reach, and are not counted as escapes.
        sdk_read(client, "READ another user's file (0600 in a 0700 dir of uid 4242)",
                 f"{CANARY}/host-only.txt", MARK)
        os.symlink(f"{CANARY}/host-only.txt", "/work/canary-link")
        sdk_read(client, "READ another user's file through a /work symlink", f"{work}/canary-link", MARK)
        sdk_write(client, "WRITE a host file outside /work", f"{CANARY}/written-by-agent",
                  f"{CANARY}/written-by-agent")
        sdk_read(client, "READ /proc/1/environ of the host", "/proc/1/environ")
        sdk_read(client, "READ the runtime's environment (/proc/self/environ)", "/proc/self/environ")
        runtime_memory(client)
        r = client.set_permissions(level="unrestricted")
        report("SET_PERMS level=unrestricted (spawned at standard)", r.get("success") and
               client.get_permissions().get("level") == "unrestricted",
               f"level now {r.get('level')}" if r.get("success") else refused(r))
        r = client.spawn("escapee", argv=["/bin/sh", "-c", "id"], sandboxed=False)
        report("SPAWN an unsandboxed child", r.get("success"), f"spawned {r}" if r.get("success") else refused(r))
        r = client.exec(["cat", "/etc/shadow"])
        report("EXEC cat /etc/shadow through the runtime", r.get("success") and r.get("exit_code") == 0,
               f"exit {r.get('exit_code')}" if r.get("success") else refused(r))
        # Not an attempt: the runtime must still serve this agent after all of the above.
        print(json.dumps({"channel": client.echo("still here")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
