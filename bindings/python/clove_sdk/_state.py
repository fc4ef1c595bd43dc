"""STORE, FETCH, DELETE and KEYS: the state store, with the seed SDK's methods and replies.

Values are anything ``json.dumps`` takes (NaN and infinities excepted); they come back deep-equal.
Scopes: ``"global"`` (every agent), ``"agent"`` (this agent only), ``"session"`` (this agent, the
agent that spawned the whole tree, and everything it spawned). ``fetch`` and ``delete_key`` without
a ``scope`` take the most private key of that name: agent, then session, then global.
"""

import json
from typing import Any, Dict, List, Optional

from .codec import Opcode

Result = Dict[str, Any]


def _failed(result: Result) -> bool:
    return result.get("success") is False


class StateMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`; uses its ``_rpc``."""

    def store(self, key: str, value: Any, scope: str = "global",
              ttl: Optional[float] = None) -> Result:
        """Stores ``value`` under ``key``; with ``ttl`` (seconds) it expires that much later."""
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        request = {"key": key, "value_json": json.dumps(value, allow_nan=False), "scope": scope,
                   "ttl_ms": None if ttl is None else max(1, round(ttl * 1000))}
        reply = self._rpc(Opcode.STORE, "StoreRequest", request, "StoreReply")  # type: ignore[attr-defined]
        if _failed(reply):
            return reply
        return {"success": True, **reply}

    def fetch(self, key: str, scope: Optional[str] = None) -> Result:
        """``{"success", "exists", "value", "scope"}``; ``value`` and ``scope`` are None when absent."""
        reply = self._rpc(Opcode.FETCH, "KeyRequest", {"key": key, "scope": scope},  # type: ignore[attr-defined]
                          "FetchReply")
        if _failed(reply):
            return reply
        found = reply["value"]
        if found is None:
            return {"success": True, "exists": False, "value": None, "scope": None}
        return {"success": True, "exists": True, "value": json.loads(found["value_json"]),
                "scope": found["scope"]}

    def delete_key(self, key: str, scope: Optional[str] = None) -> Result:
        """Deletes the key as :meth:`fetch` would find it; ``deleted`` is False if there was none."""
        reply = self._rpc(Opcode.DELETE, "KeyRequest", {"key": key, "scope": scope},  # type: ignore[attr-defined]
                          "DeleteReply")
        if _failed(reply):
            return reply
        return {"success": True, "deleted": reply["deleted"] is not None, "scope": reply["deleted"]}

    def list_keys(self, prefix: str = "", scope: Optional[str] = None) -> Result:
        """Every key this agent sees that starts with ``prefix``, sorted: ``keys`` names each once,
        ``entries`` has a ``{"key", "scope"}`` for each scope it is in."""
        entries: List[Dict[str, str]] = []
        request: Dict[str, Any] = {"prefix": prefix, "scope": scope, "after": None, "limit": 0}
        while True:
            reply = self._rpc(Opcode.KEYS, "KeysRequest", request, "KeysReply")  # type: ignore[attr-defined]
            if _failed(reply):
                return reply
            entries += reply["keys"]
            if not reply["more"] or not reply["keys"]:
                break
            request["after"] = reply["keys"][-1]["key"]
        keys = sorted({e["key"] for e in entries})
        return {"success": True, "keys": keys, "count": len(keys), "entries": entries}
