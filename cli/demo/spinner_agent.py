"""A busy loop under a 10 % CPU limit: it measures how much CPU it actually got."""
import time

from _demo import report

wall, cpu = time.monotonic(), time.process_time()
while time.monotonic() - wall < 3:
    pass
share = (time.process_time() - cpu) / (time.monotonic() - wall)
report("busy loop for 3 s, limit 10 % of a CPU", "throttled" if share <= 0.12 else "NOT throttled",
       f"got {share * 100:.1f} % of a CPU")
