"""One of three agents sharing the runtime's LLM: three questions each, through the fair queue."""
import os
import time

from _demo import report
from clove_sdk import CloveClient

me = os.environ["CLOVE_DEMO_NAME"]
with CloveClient() as client:
    answers, providers, started = [], set(), time.monotonic()
    for n in range(1, 4):
        reply = client.think(f"{me}, question {n}: name one prime number.", temperature=0.0)
        if not reply["success"]:
            report(f"THINK x3 ({me})", "failed", reply["error"])
            raise SystemExit(1)
        answers.append(reply["content"])
        providers.add(reply["provider"])
    report(f"THINK x3 ({me})", "allowed",
           f"answered by {', '.join(sorted(providers))} in {time.monotonic() - started:.2f} s: {answers[-1]!r}")
