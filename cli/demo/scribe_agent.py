"""A sandboxed agent: writes under /tmp and reads it back, byte for byte."""
import os

from _demo import outcome, report
from clove_sdk import CloveClient

work = os.environ["CLOVE_DEMO_WORK"]
data = bytes(range(256)) * 4
with CloveClient() as client:
    path = os.path.join(work, "note.bin")
    report(f"WRITE {len(data)} bytes to {path}", *outcome(client.write_file(path, data)))
    back = client.read_file(path)
    same = back.get("success") and back.get("data") == data
    report("READ it back", "allowed" if same else "failed", "identical bytes" if same else back.get("error", "content differs"))
    report("WRITE /etc/clove-demo", *outcome(client.write_file("/etc/clove-demo", "x")))
