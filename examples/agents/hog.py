"""Leaks memory 10 MiB at a time until its cgroup's limit OOM-kills it (and only it)."""
import time

chunks = []
while True:
    chunk = bytearray(10 << 20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1  # touch every page, so the memory is really charged
    chunks.append(chunk)
    time.sleep(0.05)
