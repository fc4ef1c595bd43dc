"""METRICS_*: the host, and each agent's process, requests by opcode and cgroup counters."""

from typing import Any, Dict, Optional

from .codec import Opcode


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02X}"


def _agent(m: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "agent_id": m["agent_id"], "name": m["name"], "status": m["state"],
        "uptime_ms": m["uptime_ms"],
        "process": {"pid": m["pid"], "cpu": {"time_us": m["cpu_time_us"]},
                    "memory": {"rss": m["rss_bytes"]}, "threads": m["threads"], "fds": m["fds"]},
        "syscalls": {_opcode_name(s["opcode"]): s["count"] for s in m["syscalls"]},
        "syscall_count": sum(s["count"] for s in m["syscalls"]),
        "cgroup": m["cgroup"],
    }


class MetricsMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`; uses its ``_rpc``."""

    def get_system_metrics(self) -> Dict[str, Any]:
        """Host CPUs, load and memory, and the runtime's own memory."""
        reply = self._rpc(Opcode.METRICS_SYSTEM, reply_type="SystemMetrics")  # type: ignore[attr-defined]
        if reply.get("success") is False:
            return reply
        total, available = reply["memory_total"], reply["memory_available"]
        used = total - available
        return {"success": True, "metrics": {
            "cpu": {"count": reply["cpu_count"], "load_avg": [l / 1000 for l in reply["load_avg_milli"]]},
            "memory": {"total": total, "available": available, "used": used,
                       "percent": round(100 * used / total, 1) if total else 0.0},
            "uptime_ms": reply["uptime_ms"], "agents_running": reply["agents_running"],
            "runtime_rss": reply["runtime_rss_bytes"],
        }}

    def get_agent_metrics(self, agent_id: Optional[int] = None) -> Dict[str, Any]:
        """One agent's figures (this one by default): process, requests by opcode, cgroup."""
        reply = self._rpc(Opcode.METRICS_AGENT, "MetricsRequest",  # type: ignore[attr-defined]
                          {"agent_id": agent_id}, "AgentMetrics")
        if reply.get("success") is False:
            return reply
        return {"success": True, "metrics": _agent(reply)}

    def get_all_agent_metrics(self) -> Dict[str, Any]:
        """Every agent this one may see (itself and its descendants; all when unrestricted)."""
        reply = self._rpc(Opcode.METRICS_ALL_AGENTS, reply_type="AllAgentMetrics")  # type: ignore[attr-defined]
        if reply.get("success") is False:
            return reply
        agents = [_agent(m) for m in reply["agents"]]
        return {"success": True, "agents": agents, "count": len(agents)}
