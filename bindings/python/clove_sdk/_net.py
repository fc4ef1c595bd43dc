"""THINK and HTTP: the seed's ``think`` and ``http``, served by the runtime for the agent."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .codec import Opcode

Result = Dict[str, Any]


def _think_result(reply: Dict[str, Any]) -> Result:
    usage = {"input_tokens": reply["input_tokens"], "output_tokens": reply["output_tokens"]}
    return {"success": True, "content": reply["text"], "text": reply["text"],
            "model": reply["model"], "provider": reply["provider"],
            "tokens": usage["input_tokens"] + usage["output_tokens"], "usage": usage}


def _headers(pairs: List[Dict[str, str]]) -> Dict[str, str]:
    """Response headers as a dict; a repeated header's values are joined with ", "."""
    out: Dict[str, str] = {}
    for kv in pairs:
        out[kv["key"]] = f"{out[kv['key']]}, {kv['value']}" if kv["key"] in out else kv["value"]
    return out


def _http_result(reply: Dict[str, Any]) -> Result:
    return {"success": True, "status_code": reply["status"], "headers": _headers(reply["headers"]),
            "body": reply["body"].decode("utf-8", errors="replace"), "data": reply["body"],
            "truncated": reply["truncated"], "url": reply["url"]}


#: ASYNC_POLL decoding for these opcodes: (reply type, the sync call's result builder).
NET_ASYNC_REPLIES: Dict[int, Tuple[str, Callable[[Dict[str, Any]], Result]]] = {
    Opcode.THINK: ("ThinkReply", _think_result),
    Opcode.HTTP: ("HttpReply", _http_result),
}


def _accepted(reply: Result) -> Result:
    return {"success": True, "async": True, "request_id": reply["request_id"], "status": "accepted"}


class NetMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`; uses its ``_rpc``."""

    def think(self, prompt: str, image: Optional[bytes] = None,
              image_mime_type: str = "image/jpeg", system_instruction: Optional[str] = None,
              thinking_level: Optional[str] = None, temperature: Optional[float] = None,
              model: Optional[str] = None, async_: bool = False,
              request_id: Optional[int] = None, max_tokens: Optional[int] = None) -> Result:
        """Asks the runtime's LLM: ``content`` (also ``text``) holds the answer, ``tokens`` its
        cost, ``usage`` the input and output tokens, ``model`` and ``provider`` who answered.

        With ``async_`` the runtime answers at once and :meth:`poll_async` delivers the result.
        """
        if temperature is not None and temperature < 0:
            raise ValueError(f"temperature must not be negative, not {temperature!r}")
        request = {
            "prompt": prompt,
            "image": None if image is None else {"data": bytes(image),
                                                 "mime_type": image_mime_type},
            "system_instruction": system_instruction,
            "temperature_milli": None if temperature is None else round(temperature * 1000),
            "model": model, "max_tokens": max_tokens, "thinking_level": thinking_level,
            "run_async": async_,
        }
        reply_type = "Accepted" if async_ else "ThinkReply"
        rpc = self._rpc  # type: ignore[attr-defined]
        reply = rpc(Opcode.THINK, "ThinkRequest", request, reply_type, request_id)
        if reply.get("success") is False:
            return {**reply, "content": ""}  # the seed's failed think still had content
        return _accepted(reply) if async_ else _think_result(reply)

    def http(self, url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None,
             body: Union[str, bytes, None] = None, timeout: Optional[float] = 30,
             async_: bool = False, request_id: Optional[int] = None,
             max_response_bytes: Optional[int] = None) -> Result:
        """Makes an HTTP request within this agent's network allowlist, ``timeout`` in seconds.

        ``success`` means a response came, whatever its ``status_code``; ``body`` is its text,
        ``data`` its bytes, ``headers`` a dict, ``url`` where it came from after redirects.
        """
        request = {
            "url": url, "method": method.upper(),
            "headers": [{"key": k, "value": v} for k, v in (headers or {}).items()],
            "body": body.encode("utf-8") if isinstance(body, str) else bytes(body or b""),
            "timeout_ms": None if timeout is None else int(timeout * 1000),
            "max_response_bytes": max_response_bytes, "run_async": async_,
        }
        reply_type = "Accepted" if async_ else "HttpReply"
        rpc = self._rpc  # type: ignore[attr-defined]
        reply = rpc(Opcode.HTTP, "HttpRequest", request, reply_type, request_id)
        if reply.get("success") is False:
            return reply
        return _accepted(reply) if async_ else _http_result(reply)
