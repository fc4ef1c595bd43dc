"""Crashes on purpose; the runtime restarts it with backoff, then gives up."""
from _demo import report

report("divide by zero", "crash", "ZeroDivisionError, exit 1")
print(1 / 0)
