"""Plays ping-pong with the pong agent by name: messages through the runtime's mailboxes."""
import statistics
import time

from _demo import report
from clove_sdk import CloveClient

with CloveClient() as client:
    client.register_name("ping")
    # pong may still be starting: its name appears when it registers.
    deadline = time.monotonic() + 10
    while not client.send_message({"ball": 0}, to_name="pong")["success"]:
        assert time.monotonic() < deadline, "pong never registered"
        time.sleep(0.02)
    client.recv_messages(wait=5)
    times = []
    for ball in range(1, 21):
        started = time.perf_counter()
        client.send_message({"ball": ball}, to_name="pong")
        got = client.recv_messages(wait=5)["messages"]
        times.append(time.perf_counter() - started)
        assert got and got[0]["from_name"] == "pong" and got[0]["message"] == {"ball": ball + 1}, got
    client.send_message("bye", to_name="pong")
    report(f"IPC ping-pong by name x {len(times)}", "allowed",
           f"every ball came back +1; round trip p50 {statistics.median(times) * 1e3:.2f} ms")
