"""IPC between agents (REGISTER, SEND, RECV, BROADCAST) and the event bus (SUBSCRIBE,
UNSUBSCRIBE, POLL_EVENTS, EMIT), with the seed SDK's names and reply keys. Messages and event data
are any JSON value."""

import json
from typing import Any, Dict, List, Optional

from .codec import Opcode

Result = Dict[str, Any]


def _message(m: Dict[str, Any]) -> Dict[str, Any]:
    return {"from": m["from"], "from_name": m["from_name"],
            "message": json.loads(m["message_json"]), "age_ms": m["age_ms"]}


def _event(e: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": e["event_type"], "custom_type": e["custom_type"],
            "data": json.loads(e["data_json"]), "source_agent_id": e["source_agent_id"],
            "timestamp": e["timestamp_ms"]}


class IpcMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`; uses its ``_rpc``."""

    def _call(self, opcode: Opcode, request_type: str, request: Dict[str, Any],
              reply_type: str) -> Result:
        return self._rpc(opcode, request_type, request, reply_type)  # type: ignore[attr-defined]

    # -- IPC --

    def register_name(self, name: str) -> Result:
        """Takes ``name`` for this agent, so others can send to it by name. The runtime frees it
        when this connection ends."""
        reply = self._call(Opcode.REGISTER, "RegisterRequest", {"name": name}, "RegisterReply")
        return reply if reply.get("success") is False else {"success": True, **reply}

    def register(self, name: str) -> Result:
        """Alias of :meth:`register_name`."""
        return self.register_name(name)

    def send_message(self, message: Any, to: Optional[int] = None,
                     to_name: Optional[str] = None) -> Result:
        """Sends a JSON value to one agent, by id (as ``spawn`` returned it) or registered name."""
        if (to is None) == (to_name is None):
            return {"success": False, "error": "give either to= or to_name=", "code": "invalid_argument"}
        target = {"Id": to} if to is not None else {"Name": to_name}
        request = {"to": target, "message_json": json.dumps(message)}
        reply = self._call(Opcode.SEND, "SendRequest", request, "SendReply")
        return reply if reply.get("success") is False else {"success": True, **reply}

    def recv_messages(self, max_messages: int = 10, wait: Optional[float] = None) -> Result:
        """Takes up to ``max_messages`` messages, oldest first. With ``wait`` (seconds), an empty
        mailbox answers when the first message arrives or when the wait is over."""
        wait_ms = None if wait is None else max(1, int(wait * 1000))
        request = {"max": max_messages, "wait_ms": wait_ms}
        reply = self._call(Opcode.RECV, "RecvRequest", request, "RecvReply")
        if reply.get("success") is False:
            return reply
        messages = [_message(m) for m in reply["messages"]]
        return {"success": True, "count": len(messages), "messages": messages}

    def broadcast(self, message: Any, include_self: bool = False) -> Result:
        """Sends a JSON value to every agent that registered a name."""
        request = {"message_json": json.dumps(message), "include_self": include_self}
        reply = self._call(Opcode.BROADCAST, "BroadcastRequest", request, "BroadcastReply")
        return reply if reply.get("success") is False else {"success": True, **reply}

    # -- events --

    def subscribe(self, event_types: List[str]) -> Result:
        """Subscribes to event types: the runtime's (``AGENT_EXITED``, ``STATE_CHANGED``, ...),
        ``CUSTOM``, a custom event's own name, or ``*``."""
        request = {"event_types": list(event_types), "all": False}
        reply = self._call(Opcode.SUBSCRIBE, "SubscribeRequest", request, "SubscribeReply")
        return reply if reply.get("success") is False else {"success": True, **reply}

    def unsubscribe(self, event_types: Optional[List[str]] = None, all: bool = False) -> Result:
        """Drops subscriptions: these types, or every one with ``all=True``."""
        request = {"event_types": list(event_types or []), "all": all}
        reply = self._call(Opcode.UNSUBSCRIBE, "SubscribeRequest", request, "SubscribeReply")
        return reply if reply.get("success") is False else {"success": True, **reply}

    def poll_events(self, max_events: int = 10) -> Result:
        """Takes up to ``max_events`` queued events, oldest first. ``dropped`` counts events a
        full queue lost since the last poll."""
        reply = self._call(Opcode.POLL_EVENTS, "PollEventsRequest", {"max": max_events},
                           "PollEventsReply")
        if reply.get("success") is False:
            return reply
        events = [_event(e) for e in reply["events"]]
        return {"success": True, "count": len(events), "events": events, "dropped": reply["dropped"]}

    def emit_event(self, event_type: str, data: Any = None) -> Result:
        """Emits a ``CUSTOM`` event named ``event_type`` to every subscriber."""
        request = {"event_type": event_type, "data_json": json.dumps(data)}
        reply = self._call(Opcode.EMIT, "EmitRequest", request, "EmitReply")
        if reply.get("success") is False:
            return reply
        return {"success": True, "event": "CUSTOM", "custom_type": event_type, **reply}
