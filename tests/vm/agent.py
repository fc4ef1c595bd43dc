"""The same SDK agent in every tier: `clove-run run --level unrestricted -- python3 agent.py`, and
the same with `--vm`, must both print the one JSON line in expected.json (tests/nested/vm-e2e.sh).

Both tiers run it at level unrestricted: inside a VM, EXEC is the guest's own and always allowed
(the VM is the boundary), while a standard-level process agent may not exec. It uses only what an
agent sees the same way in both tiers: its channel (CLOVE_FD), files under /tmp, EXEC, and the
state store (the host runtime's in both). Nothing that varies from run to run (pids, times, host
paths) goes into the output.
"""

import json
import os
import sys

from clove_sdk import CloveClient

PATH = "/tmp/clove-vm-e2e.txt"
TEXT = "written by the agent\nsecond line\n"


def main() -> int:
    results = {}
    with CloveClient() as client:
        hello = client.hello()
        # Its id is the runtime's in both tiers (a VM's guest is told its host id): the same for
        # HELLO, the client and the environment.
        results["hello"] = {
            "success": hello["success"], "level": hello.get("level"),
            "id_consistent": hello.get("agent_id") == client.agent_id == int(os.environ["CLOVE_AGENT_ID"]),
        }
        written = client.write_file(PATH, TEXT)
        read = client.read_file(PATH)
        results["file"] = {"written": written.get("bytes_written"), "read_back": read.get("content")}
        echo = client.exec("echo hello from the agent")
        uname = client.exec("uname -s")
        results["exec"] = {"echo": [echo["exit_code"], echo["stdout"]],
                           "uname": [uname["exit_code"], uname["stdout"]],
                           "false": client.exec("false").get("exit_code")}
        stored = client.store("vm-e2e-key", {"n": 42, "list": [1, "two"]}, scope="agent")
        fetched = client.fetch("vm-e2e-key")
        results["state"] = {"stored": stored["success"], "exists": fetched.get("exists"),
                            "value": fetched.get("value"), "scope": fetched.get("scope")}
        results["echo"] = client.echo("round trip")
    print(json.dumps(results, sort_keys=True))
    ok = all([hello["success"], written.get("success"), read.get("content") == TEXT,
              echo["exit_code"] == 0, fetched.get("value") == {"n": 42, "list": [1, "two"]}])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
