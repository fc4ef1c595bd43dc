"""The state methods' requests and replies, against the fake runtime of ``test_client_offline``."""

import math

import pytest

from clove_sdk.codec import Opcode, decode
from test_client_offline import env, error, pair, reply  # noqa: F401  (fixtures and helpers)


def test_store_sends_json_text_and_ttl_in_ms(pair):
    client, runtime = pair
    runtime.answer = lambda f: [reply(f, "StoreReply", {"key": "k", "scope": "session",
                                                        "expires_at_ms": 1_700_000_001_500})]
    assert client.store("k", {"x": [1, None]}, scope="session", ttl=1.5) == {
        "success": True, "key": "k", "scope": "session", "expires_at_ms": 1_700_000_001_500}
    request = runtime.last("StoreRequest")
    assert request == {"key": "k", "value_json": '{"x": [1, null]}', "scope": "session",
                       "ttl_ms": 1500}
    client.store("k", 1)
    assert runtime.last("StoreRequest")["scope"] == "global"
    assert runtime.last("StoreRequest")["ttl_ms"] is None
    client.store("k", 1, ttl=0.0001)
    assert runtime.last("StoreRequest")["ttl_ms"] == 1


def test_store_refuses_what_is_not_json_before_sending(pair):
    client, runtime = pair
    for value in (math.nan, math.inf, {1, 2}):
        with pytest.raises((ValueError, TypeError)):
            client.store("k", value)
    for ttl in (0, -1):
        with pytest.raises(ValueError, match="ttl"):
            client.store("k", 1, ttl=ttl)
    assert runtime.requests == []


def test_fetch_and_delete_decode_their_replies(pair):
    client, runtime = pair
    found = {"scope": "agent", "value_json": '{"a": {"b": [1, 2.5, "c"]}}', "expires_at_ms": None}
    runtime.answer = lambda f: [reply(f, "FetchReply", {"value": found})]
    assert client.fetch("k") == {"success": True, "exists": True,
                                 "value": {"a": {"b": [1, 2.5, "c"]}}, "scope": "agent"}
    assert runtime.last("KeyRequest") == {"key": "k", "scope": None}
    runtime.answer = lambda f: [reply(f, "FetchReply", {"value": None})]
    assert client.fetch("k", scope="global") == {"success": True, "exists": False,
                                                 "value": None, "scope": None}
    assert runtime.last("KeyRequest") == {"key": "k", "scope": "global"}

    runtime.answer = lambda f: [reply(f, "DeleteReply", {"deleted": "session"})]
    assert client.delete_key("k") == {"success": True, "deleted": True, "scope": "session"}
    runtime.answer = lambda f: [reply(f, "DeleteReply", {"deleted": None})]
    assert client.delete_key("k") == {"success": True, "deleted": False, "scope": None}
    assert [Opcode(f.opcode) for f in runtime.requests] == [Opcode.FETCH, Opcode.FETCH,
                                                           Opcode.DELETE, Opcode.DELETE]


def test_list_keys_follows_the_pages(pair):
    client, runtime = pair
    pages = [
        {"keys": [{"key": "job:1", "scope": "global"}, {"key": "job:2", "scope": "global"},
                  {"key": "job:2", "scope": "agent"}], "more": True},
        {"keys": [{"key": "job:3", "scope": "session"}], "more": False},
    ]
    runtime.answer = lambda f: [reply(f, "KeysReply", pages[len(runtime.requests) - 1])]
    result = client.list_keys("job:")
    assert result["keys"] == ["job:1", "job:2", "job:3"] and result["count"] == 3
    assert result["entries"][2] == {"key": "job:2", "scope": "agent"}
    requests = runtime.requests
    assert [r.opcode for r in requests] == [Opcode.KEYS, Opcode.KEYS]
    assert decode("KeysRequest", requests[0].payload) == {"prefix": "job:", "scope": None,
                                                         "after": None, "limit": 0}
    assert decode("KeysRequest", requests[1].payload)["after"] == "job:2"


def test_refusals_come_back_as_error_results(pair):
    client, runtime = pair
    runtime.answer = lambda f: [error(f, 7, "over its quota of 1000")]
    assert client.store("k", 1) == {"success": False, "error": "over its quota of 1000",
                                    "code": "limit_exceeded"}
    runtime.answer = lambda f: [error(f, 4, "permission denied: reading state is not allowed")]
    for result in (client.fetch("k"), client.delete_key("k"), client.list_keys()):
        assert result["success"] is False and result["code"] == "permission_denied"
