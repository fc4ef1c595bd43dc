"""Leaks memory 10 MiB at a time; its 50 MiB limit OOM-kills it, and only it."""
import time

from _demo import report

report("allocate 10 MiB at a time, limit 50 MiB", "started", "the kernel should OOM-kill it")
chunks = []
while True:
    chunk = bytearray(10 << 20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    chunks.append(chunk)
    time.sleep(0.05)
