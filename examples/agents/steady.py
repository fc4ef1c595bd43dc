"""Keeps answering while its neighbour misbehaves: echoes for 3 s, exits 0 only if every answer was right."""
import sys
import time

from clove_sdk import CloveClient

with CloveClient() as client:
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < 3:
        if client.echo(f"ping {count}") != f"ping {count}":
            sys.exit(1)
        count += 1
        time.sleep(0.01)
sys.exit(0 if count > 50 else 2)
