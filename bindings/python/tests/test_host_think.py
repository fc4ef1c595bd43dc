"""The host provider: a Python function answers agents' THINK through the C ABI, on worker
threads; and the runtime options that choose the LLM provider and guard HTTP."""

import json
import sys
import threading

import clove
from clove import Llm, ThinkAnswer
from test_host_support import DEADLINE_S, PYTHON_DIR

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]

AGENT = """
import json
from clove_sdk import CloveClient
with CloveClient() as c:
    print(json.dumps([c.think('hello', image=b'\\x01\\x02', image_mime_type='image/png',
                              system_instruction='sys', temperature=0.5, max_tokens=9),
                      c.think('fail'), c.think('plain')]))
"""


def run_thinker(runtime, tmp_path):
    out = tmp_path / "out.json"
    agent = runtime.spawn("thinker", [sys.executable, "-c", AGENT],
                          env={"PYTHONPATH": str(PYTHON_DIR)}, stdio=out)
    assert agent.wait(timeout=DEADLINE_S).code == 0, out.read_text()
    return agent, json.loads(out.read_text().splitlines()[-1])


def test_a_python_handler_answers_on_worker_threads(clove_lib, tmp_path):
    seen, threads = [], set()

    def handler(request):
        threads.add(threading.get_ident())
        seen.append(request)
        if request.prompt == "fail":
            raise LookupError("no model for that")
        if request.prompt == "plain":
            return "just text"
        return ThinkAnswer("echo: " + request.prompt, model="py-model", input_tokens=7,
                           output_tokens=3)

    with clove.Runtime(llm=Llm(None), http_refuse_non_public=True) as rt:
        rt.on_think(handler)
        agent, (answered, failed, plain) = run_thinker(rt, tmp_path)
        rt.on_think(None)
    assert (answered["content"], answered["model"], answered["provider"]) == (
        "echo: hello", "py-model", "host")
    assert answered["usage"] == {"input_tokens": 7, "output_tokens": 3}
    assert failed["code"] == "io" and "LookupError: no model for that" in failed["error"]
    assert (plain["content"], plain["tokens"]) == ("just text", 0)
    request = seen[0]
    assert (request.agent_id, request.agent_name, request.prompt) == (agent.id, "thinker", "hello")
    assert (request.system_instruction, request.model) == ("sys", None)
    assert request.thinking_level is None
    assert (request.image, request.image_mime_type) == (b"\x01\x02", "image/png")
    assert (request.temperature, request.max_tokens) == (0.5, 9)
    assert threading.get_ident() not in threads


def test_without_handler_or_provider_think_says_how_to_configure_one(clove_lib, tmp_path):
    with clove.Runtime(llm=Llm(None)) as rt:
        _, (answered, _, _) = run_thinker(rt, tmp_path)
    assert answered["code"] == "unsupported" and "OPENAI_API_KEY" in answered["error"]
