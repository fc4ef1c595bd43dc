"""Shared by the demo agents: one line per action, read back by `clove-run demo`."""
import json


def report(action, decision, detail=""):
    print("REPORT " + json.dumps({"action": action, "decision": decision, "detail": str(detail)}), flush=True)


def outcome(reply):
    """'allowed' or 'denied', and the detail worth showing."""
    if reply.get("success"):
        return "allowed", (reply.get("stdout") or "").strip()
    return ("denied" if reply.get("code") == "permission_denied" else "failed"), reply.get("error", "")
