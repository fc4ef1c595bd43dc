"""Clove's agent SDK: talk to the Clove runtime from Python (stdlib only).

    from clove_sdk import CloveClient

    with CloveClient() as client:
        print(client.exec("echo hi")["stdout"])
"""

from .client import AgentOSClient, CloveClient, CloveConnectionError, connect
from .codec import CodecError, FrameError, Opcode

__version__ = "0.1.0"

__all__ = ["AgentOSClient", "CloveClient", "CloveConnectionError", "CodecError", "FrameError",
           "Opcode", "connect"]
