"""An unrestricted agent: runs a command, starts a helper agent, lists and stops it."""
from _demo import outcome, report
from clove_sdk import CloveClient

with CloveClient() as client:
    ran = client.exec(["uname", "-s"])
    report("EXEC uname -s", *outcome(ran))
    child = client.spawn("helper", None, argv=["sleep", "30"], level="minimal")
    report("SPAWN helper (minimal)", *outcome(child))
    if child.get("success"):
        names = [a["name"] for a in client.list_agents()]
        report("LIST", "allowed", ", ".join(sorted(names)))
        report("KILL helper", *outcome(client.kill(agent_id=child["id"])))
