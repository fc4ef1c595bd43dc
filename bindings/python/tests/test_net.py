"""think() and http(): what they send and return against the fake runtime, and end to end through
``clove-run`` against a loopback fake of an OpenAI-compatible server and of a web site."""

import base64
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from clove_sdk.codec import Opcode, encode
from conftest import SDK, agent_script
from test_client_offline import env, error, pair, reply  # noqa: F401 (fixtures)

THINK_REPLY = {"text": "4", "model": "m-1", "provider": "openai", "input_tokens": 12,
               "output_tokens": 1}
HTTP_REPLY = {"status": 404, "headers": [{"key": "x-a", "value": "1"},
                                         {"key": "set-cookie", "value": "a=1"},
                                         {"key": "set-cookie", "value": "b=2"}],
              "body": b"caf\xc3\xa9 \xff", "truncated": True, "url": "http://h/x"}


def test_think_sends_every_seed_argument_and_returns_the_seed_keys(pair):
    client, runtime = pair
    runtime.answer = lambda f: [reply(f, "ThinkReply", THINK_REPLY)]
    result = client.think("2+2?", b"\x89PNG", "image/png", "Be brief.", "low", 0.7, "gpt-x",
                          max_tokens=5)
    assert runtime.last("ThinkRequest") == {
        "prompt": "2+2?", "image": {"data": b"\x89PNG", "mime_type": "image/png"},
        "system_instruction": "Be brief.", "temperature_milli": 700, "model": "gpt-x",
        "max_tokens": 5, "thinking_level": "low", "run_async": False}
    assert result == {"success": True, "content": "4", "text": "4", "model": "m-1",
                      "provider": "openai", "tokens": 13,
                      "usage": {"input_tokens": 12, "output_tokens": 1}}


def test_a_refused_think_keeps_the_seed_content_key(pair):
    client, runtime = pair
    runtime.answer = lambda f: [error(f, 7, "llm quota: 2 of 2 calls used")]
    assert client.think("hi") == {"success": False, "error": "llm quota: 2 of 2 calls used",
                                  "code": "limit_exceeded", "content": ""}
    with pytest.raises(ValueError):
        client.think("hi", temperature=-1)


def test_async_think_then_poll(pair):
    client, runtime = pair
    runtime.answer = lambda f: [reply(f, "Accepted", {"request_id": f.request_id})]
    assert client.think("hi", async_=True, request_id=40) == {
        "success": True, "async": True, "request_id": 40, "status": "accepted"}
    assert runtime.last("ThinkRequest")["run_async"] is True
    runtime.answer = lambda f: [reply(f, "AsyncPollReply", {"results": [
        {"request_id": 40, "opcode": Opcode.THINK, "error": None,
         "payload": encode("ThinkReply", THINK_REPLY)},
        {"request_id": 41, "opcode": Opcode.HTTP, "error": None,
         "payload": encode("HttpReply", HTTP_REPLY)}]})]
    results = client.poll_async()["results"]
    assert [r["opcode_name"] for r in results] == ["THINK", "HTTP"]
    assert results[0]["payload"]["content"] == "4"
    assert results[1]["payload"]["status_code"] == 404


def test_http_sends_the_seed_arguments_and_returns_the_seed_keys(pair):
    client, runtime = pair
    runtime.answer = lambda f: [reply(f, "HttpReply", HTTP_REPLY)]
    result = client.http("http://h/x", "post", {"Content-Type": "text/plain"}, "é", 2.5)
    assert runtime.last("HttpRequest") == {
        "url": "http://h/x", "method": "POST",
        "headers": [{"key": "Content-Type", "value": "text/plain"}],
        "body": "é".encode(), "timeout_ms": 2500, "max_response_bytes": None, "run_async": False}
    assert result == {"success": True, "status_code": 404,
                      "headers": {"x-a": "1", "set-cookie": "a=1, b=2"},
                      "body": "café \ufffd", "data": b"caf\xc3\xa9 \xff", "truncated": True,
                      "url": "http://h/x"}
    denial = "permission denied: h:80 is not in the network allowlist"
    runtime.answer = lambda f: [error(f, 4, denial)]
    assert client.http("http://h/")["code"] == "permission_denied"


# -- end to end --------------------------------------------------------------------------------


class _Fake(http.server.BaseHTTPRequestHandler):
    """Records each request on the server and answers with ``server.answer(request)``."""

    def _serve(self):
        length = int(self.headers.get("content-length") or 0)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = {"method": self.command, "path": self.path, "headers": headers,
                   "body": self.rfile.read(length)}
        self.server.requests.append(request)
        status, content_type, body = self.server.answer(request)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    """Starts a loopback server answering with ``answer``; stops them all after the test."""
    servers = []

    def start(answer):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
        server.requests, server.answer = [], answer
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run(clove_run, script, *args, env=None):
    cmd = [clove_run, "run", "--env", f"PYTHONPATH={SDK}", *args, "--", sys.executable, script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def test_think_end_to_end_through_an_openai_compatible_server(clove_run, tmp_path, fake):
    def chat(request):
        answer = {"model": "fake-chat", "usage": {"prompt_tokens": 9, "completion_tokens": 2},
                  "choices": [{"message": {"role": "assistant", "content": "Four."}}]}
        return 200, "application/json", json.dumps(answer).encode()

    server = fake(chat)
    script = agent_script(tmp_path, "thinker.py", """
        import json, os
        from clove_sdk import CloveClient

        assert "OPENAI_API_KEY" not in os.environ  # the key stays with the host
        with CloveClient() as client:
            print(json.dumps(client.think("2+2?", image=b"img", image_mime_type="image/png",
                                          system_instruction="Be brief.", temperature=0.2)))
    """)
    env = {**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1",
           "OPENAI_API_KEY": "sk-e2e", "OPENAI_MODEL": "fake-model"}
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    done = run(clove_run, script, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "success": True, "content": "Four.", "text": "Four.", "model": "fake-chat",
        "provider": "openai", "tokens": 11, "usage": {"input_tokens": 9, "output_tokens": 2}}
    request = server.requests[0]
    assert (request["path"], request["headers"]["authorization"]) == ("/v1/chat/completions",
                                                                      "Bearer sk-e2e")
    body = json.loads(request["body"])
    assert body["model"] == "fake-model" and body["temperature"] == 0.2
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    image = "data:image/png;base64," + base64.b64encode(b"img").decode()
    assert body["messages"][1]["content"][1]["image_url"]["url"] == image


def test_http_end_to_end_and_the_guard(clove_run, tmp_path, fake):
    server = fake(lambda r: (200, "text/plain", f"{r['method']} {r['path']}".encode()))
    url = f"http://127.0.0.1:{server.server_port}/hello?x=1"
    script = agent_script(tmp_path, "fetcher.py", f"""
        import json
        from clove_sdk import CloveClient

        with CloveClient() as client:
            result = client.http("{url}", headers={{"X-Agent": "yes"}})
            result.pop("data", None)
            print(json.dumps(result))
    """)
    done = run(clove_run, script, "--level", "unrestricted", "--http-private")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["success"], result["status_code"], result["body"]) == (True, 200,
                                                                         "GET /hello?x=1")
    assert result["headers"]["content-type"] == "text/plain" and result["url"] == url
    assert server.requests[0]["headers"]["x-agent"] == "yes"

    # Without --http-private the runtime refuses loopback; a standard agent may not http at all.
    refused = json.loads(run(clove_run, script, "--level", "unrestricted").stdout)
    assert refused["code"] == "permission_denied" and "loopback" in refused["error"], refused
    denied = json.loads(run(clove_run, script).stdout)
    assert denied["code"] == "permission_denied" and "http is not allowed" in denied["error"]
    assert len(server.requests) == 1
