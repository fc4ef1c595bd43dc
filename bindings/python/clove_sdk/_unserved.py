"""The seed SDK's methods for services this runtime does not serve yet.

Each keeps the seed's signature (calls are checked against it) and sends its opcode with an empty
payload; the runtime answers ``unsupported``, returned as ``{"success": False, "error": ...,
"code": "unsupported"}``.
"""

import functools
from typing import Any, Callable, Dict, Optional

from .codec import Opcode

Result = Dict[str, Any]


def _unserved(opcode: Opcode) -> Callable[[Callable[..., None]], Callable[..., Result]]:
    """Turns a body-less seed method into one that sends ``opcode``."""
    def wrap(signature: Callable[..., None]) -> Callable[..., Result]:
        @functools.wraps(signature)
        def method(self: Any, *args: Any, **kwargs: Any) -> Result:
            signature(self, *args, **kwargs)  # a TypeError if the arguments do not fit
            return self._unserved(opcode)
        return method
    return wrap


class UnservedMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`, which provides ``_unserved(opcode)``."""

    # -- worlds --

    @_unserved(Opcode.WORLD_CREATE)
    def world_create(self, name: str, config: Optional[Dict[str, Any]] = None) -> None:
        """Creates a simulated world."""

    @_unserved(Opcode.WORLD_DESTROY)
    def world_destroy(self, world_id: str, force: bool = False) -> None:
        """Destroys a world."""

    @_unserved(Opcode.WORLD_LIST)
    def world_list(self) -> None:
        """Lists worlds."""

    @_unserved(Opcode.WORLD_JOIN)
    def world_join(self, world_id: str) -> None:
        """Joins a world."""

    @_unserved(Opcode.WORLD_LEAVE)
    def world_leave(self) -> None:
        """Leaves the current world."""

    @_unserved(Opcode.WORLD_EVENT)
    def world_event(self, world_id: str, event_type: str,
                    params: Optional[Dict[str, Any]] = None) -> None:
        """Injects an event into a world."""

    @_unserved(Opcode.WORLD_STATE)
    def world_state(self, world_id: str) -> None:
        """A world's state."""

    @_unserved(Opcode.WORLD_SNAPSHOT)
    def world_snapshot(self, world_id: str) -> None:
        """Snapshots a world."""

    @_unserved(Opcode.WORLD_RESTORE)
    def world_restore(self, snapshot: Dict[str, Any], new_world_id: Optional[str] = None) -> None:
        """Restores a world from a snapshot."""

    # -- tunnel --

    @_unserved(Opcode.TUNNEL_CONNECT)
    def tunnel_connect(self, relay_url: str, machine_id: Optional[str] = None,
                       token: Optional[str] = None) -> None:
        """Connects the runtime to a relay."""

    @_unserved(Opcode.TUNNEL_DISCONNECT)
    def tunnel_disconnect(self) -> None:
        """Disconnects from the relay."""

    @_unserved(Opcode.TUNNEL_STATUS)
    def tunnel_status(self) -> None:
        """The relay connection's status."""

    @_unserved(Opcode.TUNNEL_LIST_REMOTES)
    def tunnel_list_remotes(self) -> None:
        """Remote agents connected through the relay."""

    @_unserved(Opcode.TUNNEL_CONFIG)
    def tunnel_config(self, relay_url: Optional[str] = None, machine_id: Optional[str] = None,
                      token: Optional[str] = None,
                      reconnect_interval: Optional[int] = None) -> None:
        """Configures the relay connection."""
