"""Keeps a counter in the state store, and a key that expires."""
import time

from _demo import report
from clove_sdk import CloveClient

with CloveClient() as client:
    for n in range(1, 6):
        client.store("demo/counter", {"count": n, "by": "counter"})
    seen = client.fetch("demo/counter")["value"]
    report("STATE counter x5", "allowed" if seen == {"count": 5, "by": "counter"} else "failed",
           f"read back {seen}")
    client.store("demo/blink", "soon gone", ttl=1)
    before = client.fetch("demo/blink")["exists"]
    time.sleep(1.5)
    after = client.fetch("demo/blink")["exists"]
    report("STATE ttl=1 key", "allowed" if (before, after) == (True, False) else "failed",
           f"there at once: {before}, after 1.5 s: {after}")
