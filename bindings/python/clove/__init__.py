"""Clove's host API: run AI agents as sandboxed processes from Python, over libclove's C ABI.

    import clove

    with clove.Runtime() as rt:
        agent = rt.spawn("hello", ["/bin/echo", "hi"], stdio=clove.Stdio.NULL)
        print(agent.wait(timeout=5).code)

libclove.so is found through ``$CLOVE_LIB``, then a copy bundled in this package, then the system's
library search (docs/binding-python.md).
"""

from . import _lib
from .errors import (BadFrame, BadPayload, CloveError, Conflict, InternalError, InvalidArgument,
                     IoError, LibraryError, LimitExceeded, NotFound, PermissionDenied, Status,
                     Timeout, UnknownOpcode, Unsupported)
from .options import Limits, Llm, Mount, Restart, Stdio
from .runtime import Agent, Runtime
from .values import (AgentInfo, AgentState, CgroupMetrics, Event, EventKind, Exit, Metrics,
                     ThinkAnswer, ThinkRequest)

__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libclove's version, e.g. "0.1.0"."""
    return _lib.load().clove_version().decode()


__all__ = [
    "Agent", "AgentInfo", "AgentState", "BadFrame", "BadPayload", "CgroupMetrics", "CloveError",
    "Conflict", "Event", "EventKind", "Exit", "InternalError", "InvalidArgument", "IoError",
    "LibraryError", "LimitExceeded", "Limits", "Llm", "Metrics", "Mount", "NotFound",
    "PermissionDenied", "Restart", "Runtime", "Status", "Stdio", "ThinkAnswer", "ThinkRequest",
    "Timeout", "UnknownOpcode", "Unsupported", "library_version",
]
