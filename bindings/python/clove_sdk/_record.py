"""Recording and replay (RECORD_START/STOP/STATUS, REPLAY_START/STATUS) with the seed SDK's names.
A recording is JSON text: save it with ``get_recording_status(export=True)["recording_data"]`` and
hand it to ``start_replay`` in a fresh agent to get the recorded results back."""

from typing import Any, Dict, List, Optional

from .codec import Opcode

Result = Dict[str, Any]


def _record_status(reply: Dict[str, Any]) -> Result:
    if reply.get("success") is False:
        return reply
    status = {"success": True, "recording": reply["recording"], "entry_count": reply["entries"],
              "truncated": reply["truncated"]}
    if reply["recording_json"] is not None:
        status["recording_data"] = reply["recording_json"]
    return status


def _replay_status(reply: Dict[str, Any]) -> Result:
    if reply.get("success") is False:
        return reply
    return {"success": True, **reply}


class RecordMethods:
    """Mixed into :class:`~clove_sdk.CloveClient`; uses its ``_rpc``."""

    def start_recording(self, include_think: bool = False, include_http: bool = False,
                        include_exec: bool = False, filter_agents: Optional[List[int]] = None,
                        max_entries: int = 50000) -> Result:
        """Records the results of READ (and of THINK, HTTP, EXEC when included) made by the
        agents in ``filter_agents``, or by every agent this one may observe."""
        request = {"include_think": include_think, "include_http": include_http,
                   "include_exec": include_exec, "filter_agents": list(filter_agents or []),
                   "max_entries": max_entries}
        return _record_status(self._rpc(Opcode.RECORD_START, "RecordStartRequest", request,  # type: ignore[attr-defined]
                                        "RecordStatus"))

    def stop_recording(self) -> Result:
        """Stops the recording; it stays available for export until the next one starts."""
        return _record_status(self._rpc(Opcode.RECORD_STOP, reply_type="RecordStatus"))  # type: ignore[attr-defined]

    def get_recording_status(self, export: bool = False) -> Result:
        """The recording's state; with ``export``, its JSON as ``recording_data``."""
        return _record_status(self._rpc(Opcode.RECORD_STATUS, "RecordStatusRequest",  # type: ignore[attr-defined]
                                        {"export": export}, "RecordStatus"))

    def start_replay(self, recording_data: str, source_agent_id: Optional[int] = None) -> Result:
        """From now on, this agent's recorded syscalls are answered from ``recording_data`` (the
        run of ``source_agent_id``, which may be left out when the recording holds one agent)."""
        request = {"recording_json": recording_data, "source_agent_id": source_agent_id}
        return _replay_status(self._rpc(Opcode.REPLAY_START, "ReplayStartRequest", request,  # type: ignore[attr-defined]
                                        "ReplayStatus"))

    def get_replay_status(self) -> Result:
        """How far the replay got, and why it stopped if it diverged."""
        return _replay_status(self._rpc(Opcode.REPLAY_STATUS, reply_type="ReplayStatus"))  # type: ignore[attr-defined]
