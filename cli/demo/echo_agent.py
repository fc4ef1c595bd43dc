"""Answers noops: the round trip an agent sees."""
import statistics
import time

from _demo import report
from clove_sdk import CloveClient

with CloveClient() as client:
    hello = client.hello()
    report("HELLO", "allowed", f"agent id {hello['agent_id']}, protocol v{hello['protocol_version']}")
    times = []
    for i in range(200):
        start = time.perf_counter()
        answer = client.noop(f"ping {i}")
        times.append(time.perf_counter() - start)
        assert answer == f"ping {i}", answer
    report("200 x NOOP", "allowed", f"p50 round trip {statistics.median(times) * 1e6:.0f} us from Python")
