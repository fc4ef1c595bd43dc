"""Answers the ping agent: each ball comes back one higher, to whoever `from` names."""
from _demo import report
from clove_sdk import CloveClient

with CloveClient() as client:
    taken = client.register_name("pong")
    report("REGISTER pong", "allowed" if taken["success"] else "denied", f"agent {taken.get('agent_id')}")
    served = 0
    while True:
        for m in client.recv_messages(wait=10)["messages"]:
            if m["message"] == "bye":
                report("answered balls", "allowed", f"{served} balls, each sent back to its `from`")
                raise SystemExit(0)
            client.send_message({"ball": m["message"]["ball"] + 1}, to=m["from"])
            served += 1
