"""What the runtime reports: how agents ended, lifecycle events, agent listings and metrics.

Each is a frozen dataclass copied out of the C struct at once, so none refers to library memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Optional, Type, TypeVar, Union

from . import _lib


class AgentState(IntEnum):
    """``clove_agent_state``."""

    RUNNING = 0
    PAUSED = 1
    EXITED = 2


class EventKind(IntEnum):
    """``clove_event_kind``: what happened to an agent."""

    SPAWNED = 0
    """Its process started (again, after a restart); see :attr:`Event.pid`."""
    EXITED = 1
    """Its process ended, by itself or by a kill; see :attr:`Event.exit`."""
    PAUSED = 2
    RESUMED = 3
    RESTARTING = 4
    """It starts again after :attr:`Event.delay_ms`, restart number :attr:`Event.attempt`."""
    ESCALATED = 5
    """Its restart budget is spent; it will not be started again."""
    OOM = 6
    """The kernel killed one of its processes for exceeding its memory limit; EXITED follows."""
    MESSAGE_RECEIVED = 7
    """A bus event (see :meth:`Runtime.subscribe <clove.Runtime.subscribe>`): a message reached
    an agent's mailbox. Bus events carry :attr:`Event.name` and :attr:`Event.data`."""
    STATE_CHANGED = 8
    """A bus event: a state store key changed."""
    SYSCALL_BLOCKED = 9
    """A bus event: the policy refused one of the agent's requests."""
    RESOURCE_WARNING = 10
    """A bus event: an agent hit a limit (a full mailbox, ...)."""
    CUSTOM = 11
    """A bus event: an agent emitted a custom event; :attr:`Event.name` is its type."""


_Enum = TypeVar("_Enum", bound=IntEnum)


def _known(enum: Type[_Enum], value: int) -> Union[_Enum, int]:
    # A newer library may report a value this binding does not know yet: keep it as a number.
    try:
        return enum(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Exit:
    """How an agent's process ended."""

    code: Optional[int]
    """Its exit code when it exited by itself, else None."""
    signal: Optional[int]
    """The signal that ended it, else None."""
    oom_killed: bool = False
    """The kernel killed it for exceeding its memory limit."""

    @classmethod
    def from_c(cls, exit: _lib.clove_exit) -> Exit:
        return cls(code=exit.code if exit.has_code else None, signal=exit.signal or None,
                   oom_killed=exit.oom_killed)


@dataclass(frozen=True)
class Event:
    """A lifecycle event, or a bus event the host subscribed to. Fields that do not apply to its
    kind are 0 or None."""

    agent_id: int
    kind: Union[EventKind, int]
    timestamp_ms: int
    """When it happened, in milliseconds since the Unix epoch."""
    pid: int = 0
    """For SPAWNED: the new process id."""
    exit: Optional[Exit] = None
    """For EXITED: how it ended."""
    attempt: int = 0
    """For RESTARTING: the restart's number within the window."""
    delay_ms: int = 0
    """For RESTARTING: how long until the restart."""
    name: Optional[str] = None
    """For bus events: the type ("MESSAGE_RECEIVED"), or a custom event's own name."""
    data: Any = None
    """For bus events: the event's data, decoded from JSON."""

    @classmethod
    def from_c(cls, event: _lib.clove_event) -> Event:
        kind = _known(EventKind, event.kind)
        exit = Exit.from_c(event.exit) if kind == EventKind.EXITED else None
        # Copied now: the strings live only until the next event is taken on this thread.
        name = event.name.decode() if event.name is not None else None
        data = json.loads(event.data_json) if event.data_json is not None else None
        return cls(agent_id=event.agent_id, kind=kind, timestamp_ms=event.timestamp_ms,
                   pid=event.pid, exit=exit, attempt=event.attempt, delay_ms=event.delay_ms,
                   name=name, data=data)


@dataclass(frozen=True)
class AgentInfo:
    """One agent of :meth:`Runtime.list() <clove.Runtime.list>`."""

    id: int
    name: str
    level: str
    """Its permission level's name, or "custom"."""
    state: Union[AgentState, int]
    pid: int
    """Its process id (of its last run when ended); 0 for one that connected."""
    parent: int
    """The agent that spawned it, or 0 for one the host spawned or that connected."""
    uptime_ms: int
    exit: Optional[Exit]
    """How it ended, once it has."""

    @classmethod
    def from_c(cls, info: _lib.clove_agent_info) -> AgentInfo:
        return cls(id=info.id, name=info.name.decode(), level=info.level.decode(),
                   state=_known(AgentState, info.state), pid=info.pid, parent=info.parent,
                   uptime_ms=info.uptime_ms, exit=Exit.from_c(info.exit) if info.has_exit else None)


@dataclass(frozen=True)
class CgroupMetrics:
    """The counters of an agent's cgroup."""

    cpu_usage_us: int
    cpu_throttled_us: int
    memory_current: int
    memory_peak: int
    pids_current: int
    oom_kills: int


@dataclass(frozen=True)
class Metrics:
    """An agent's figures, from :meth:`Runtime.metrics() <clove.Runtime.metrics>`."""

    uptime_ms: int
    cpu_time_us: int
    """CPU time of its main process."""
    rss_bytes: int
    threads: int
    fds: int
    syscalls: int
    """Every request it made to the runtime, of any opcode."""
    cgroup: Optional[CgroupMetrics]
    """None for an agent started without limits or sandbox (it has no cgroup)."""

    @classmethod
    def from_c(cls, m: _lib.clove_agent_metrics) -> Metrics:
        cgroup = CgroupMetrics(
            cpu_usage_us=m.cgroup_cpu_usage_us, cpu_throttled_us=m.cgroup_cpu_throttled_us,
            memory_current=m.cgroup_memory_current, memory_peak=m.cgroup_memory_peak,
            pids_current=m.cgroup_pids_current, oom_kills=m.cgroup_oom_kills,
        ) if m.has_cgroup else None
        return cls(uptime_ms=m.uptime_ms, cpu_time_us=m.cpu_time_us, rss_bytes=m.rss_bytes,
                   threads=m.threads, fds=m.fds, syscalls=m.syscalls, cgroup=cgroup)


@dataclass(frozen=True)
class ThinkRequest:
    """A THINK as the host's think handler sees it (:meth:`Runtime.on_think
    <clove.Runtime.on_think>`), copied out of the C struct."""

    agent_id: int
    agent_name: str
    prompt: str
    system_instruction: Optional[str]
    model: Optional[str]
    """The model the agent named, or None for the handler's own choice."""
    image: Optional[bytes]
    image_mime_type: Optional[str]
    temperature: Optional[float]
    max_tokens: Optional[int]
    """The agent's cap, lowered to what its quota has left; None for no limit."""
    thinking_level: Optional[str]

    @classmethod
    def from_c(cls, c: _lib.clove_think_request) -> ThinkRequest:
        text = lambda s: None if s is None else s.decode()  # noqa: E731
        image = bytes(c.image[:c.image_len]) if c.image else None
        return cls(agent_id=c.agent_id, agent_name=c.agent_name.decode(), prompt=c.prompt.decode(),
                   system_instruction=text(c.system_instruction), model=text(c.model),
                   image=image, image_mime_type=text(c.image_mime_type),
                   temperature=c.temperature if c.has_temperature else None,
                   max_tokens=c.max_tokens or None, thinking_level=text(c.thinking_level))


@dataclass(frozen=True)
class ThinkAnswer:
    """What a think handler answers (a plain ``str`` is the text alone). The tokens count
    against the agent's quota; ``model`` empty means the one asked for."""

    text: str
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
