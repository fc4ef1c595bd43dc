"""A Python host embeds Clove through the `clove` package: start the runtime, spawn two sandboxed
Python agents, watch the memory hog get OOM-killed alone while its sibling keeps answering."""

import sys
from collections import defaultdict
from pathlib import Path

import clove
from clove import EventKind, Limits, Stdio

EXAMPLES = Path(__file__).resolve().parent.parent
SDK = EXAMPLES.parent / "bindings" / "python"


def spawn(runtime, name, memory=None):
    script = EXAMPLES / "agents" / f"{name}.py"
    return runtime.spawn(name, ["/usr/bin/python3", str(script)], sandboxed=True,
                         stdio=Stdio.NULL, limits=Limits(memory_bytes=memory),
                         env={"PYTHONPATH": str(SDK)})


def step(event):
    if event.kind != EventKind.EXITED:
        return event.kind.name.lower()
    exit = event.exit
    # A sandboxed program killed by signal s ends its sandbox with code 128 + s, as shells say.
    how = f"code {exit.code}" if exit.code is not None else f"signal {exit.signal or 0}"
    return f"exited ({how}{', oom-killed' if exit.oom_killed else ''})"


def main():
    with clove.Runtime() as runtime:
        hog = spawn(runtime, "hog", memory=50 << 20)
        steady = spawn(runtime, "steady")

        # Each agent's lifecycle as the host saw it, and when each one ended.
        seen = defaultdict(list)
        ended = {}
        for event in runtime.events(timeout=30):
            seen[event.agent_id].append(step(event))
            if event.kind == EventKind.EXITED:
                ended[event.agent_id] = event.timestamp_ms
                if len(ended) == 2:
                    break
        else:
            sys.exit("no event within 30 s")

        for agent in (hog, steady):
            print(f"{agent.name}: {' -> '.join(seen[agent.id])}")
        steady_ok = steady.wait(timeout=5).code == 0
        if steady_ok and hog.wait(timeout=5).oom_killed and ended[hog.id] <= ended[steady.id]:
            print("the hog was killed alone while steady kept answering")


if __name__ == "__main__":
    main()
