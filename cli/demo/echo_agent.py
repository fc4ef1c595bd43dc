"""Answers noops for 4 s while its neighbours misbehave: the round trip an agent sees."""
import statistics
import time

from _demo import report
from clove_sdk import CloveClient

with CloveClient() as client:
    hello = client.hello()
    report("HELLO", "allowed", f"agent id {hello['agent_id']}, protocol v{hello['protocol_version']}")
    times = []
    start = time.monotonic()
    while time.monotonic() - start < 4:
        t = time.perf_counter()
        answer = client.noop(f"ping {len(times)}")
        times.append(time.perf_counter() - t)
        assert answer == f"ping {len(times) - 1}", answer
        time.sleep(0.001)
    report(f"NOOP x {len(times)} over 4 s", "allowed",
           f"p50 {statistics.median(times) * 1e6:.0f} us, max {max(times) * 1e3:.1f} ms from Python")
