"""The runtime inside this process, and handles to the agents it runs."""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import threading
import time
import warnings
import weakref
from contextlib import contextmanager
from ctypes import byref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from . import _lib
from .errors import NotFound, Timeout
from .options import (Llm, PathLike, c_str, c_unsigned, optional_c_str, runtime_options,
                      spawn_options)
from .values import AgentInfo, Event, Exit, Metrics, ThinkAnswer, ThinkRequest

log = logging.getLogger("clove")

# Blocking C calls (wait, next_event) are made in slices of this many milliseconds, so that
# close() in another thread never waits longer than one slice for them to return: the C API
# forbids freeing a runtime while another call on it runs.
WAIT_SLICE_MS = 100

EventCallback = Callable[[Event], None]
ThinkHandler = Callable[[ThinkRequest], Union[ThinkAnswer, str]]


class _ReactorThread:
    """Which thread runs the event callback: calling the runtime from it would deadlock. Shared
    by a Runtime and its callback without the callback referring to the Runtime."""

    ident: Optional[int] = None


class Runtime:
    """Clove's runtime, running inside this process on a reactor thread of its own.

    Use it as a context manager, or call :meth:`close`: closing kills every agent it runs. A
    runtime left open is closed when it is garbage-collected (with a ``ResourceWarning``) or at
    interpreter exit. Every method may be called from any thread, except from the event callback.

    Keywords (None keeps the library's default):

    - ``home``: the directory ``~`` stands for in path policies (default ``$HOME``, else ``/root``);
    - ``max_payload``: the largest frame payload accepted from an agent, in bytes (1 MiB);
    - ``audit_capacity``: how many audit entries are kept in memory (10 000);
    - ``event_capacity``: how many events can queue unread before the oldest is dropped (1 024);
    - ``exited_retention``: how many ended agents are remembered for wait and list (256);
    - ``audit_file``: also append every audit entry to this file, as JSON lines (mode 0600);
    - ``state_path``: keep the agents' state store (its global keys) in this database file, across
      runs (default: in memory). A damaged file, or one another runtime has open, is an ``IoError``.
    - ``llm``: the :class:`Llm` provider THINK asks (default: the one the environment names);
    - ``http_refuse_non_public``: whether agents' HTTP is refused for loopback, private and
      link-local addresses (True by default; docs/services.md);
    - ``vm_kernel``, ``vm_initramfs``: what microVM agents boot (default ``CLOVE_VM_KERNEL`` and
      ``CLOVE_VM_INITRAMFS``; docs/microvm.md).
    """

    def __init__(self, *, home: Optional[PathLike] = None, max_payload: Optional[int] = None,
                 audit_capacity: Optional[int] = None, event_capacity: Optional[int] = None,
                 exited_retention: Optional[int] = None, audit_file: Optional[PathLike] = None,
                 state_path: Optional[PathLike] = None, llm: Optional[Llm] = None,
                 http_refuse_non_public: Optional[bool] = None,
                 vm_kernel: Optional[PathLike] = None, vm_initramfs: Optional[PathLike] = None):
        self._handle: Optional[ctypes._Pointer[_lib.clove_runtime]] = None
        self._state = threading.Condition()
        self._calls = 0
        # The CFUNCTYPE object C holds the address of, set under the lock so that it is always
        # the one C has (another would be collected while C still calls it).
        self._callback: Optional[Any] = None
        self._callback_lock = threading.Lock()
        # Likewise for the think handler.
        self._think: Optional[Any] = None
        self._think_lock = threading.Lock()
        self._reactor = _ReactorThread()
        lib = _lib.load()
        handle = _lib.runtime_ptr()
        with runtime_options(home=home, max_payload=max_payload, audit_capacity=audit_capacity,
                             event_capacity=event_capacity, exited_retention=exited_retention,
                             audit_file=audit_file, state_path=state_path, llm=llm,
                             http_refuse_non_public=http_refuse_non_public,
                             vm_kernel=vm_kernel, vm_initramfs=vm_initramfs) as opts:
            lib.clove_runtime_new(opts, byref(handle))
        self._handle = handle
        _open_runtimes.add(self)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<clove.Runtime {'closed' if self.closed else 'open'}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._handle is None

    def close(self) -> None:
        """Kills every agent and stops the runtime; later calls raise ``ValueError``. Waits for
        calls running in other threads to return first (blocked waits return within
        ``WAIT_SLICE_MS``). Closing twice does nothing."""
        self._refuse_reactor_thread()
        with self._state:
            handle, self._handle = self._handle, None
            while self._calls:
                self._state.wait()
        if handle is None:
            return
        _open_runtimes.discard(self)
        _lib.load().clove_runtime_free(handle)
        self._callback = None  # clove_runtime_free returned: the callback will not run again
        self._think = None  # nor the think handler

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is None:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        if threading.get_ident() == self._reactor.ident:
            # Collected inside the event callback: freeing joins the reactor thread, so free from
            # another thread once the callback has returned.
            handle, callback = self._handle, self._callback
            self._handle = None
            threading.Thread(target=_free_later, args=(handle, callback), daemon=True).start()
        else:
            self.close()

    @contextmanager
    def _live(self) -> Iterator[ctypes._Pointer[_lib.clove_runtime]]:
        """The handle, kept alive (close() waits) until the block ends."""
        self._refuse_reactor_thread()
        with self._state:
            if self._handle is None:
                raise ValueError("the runtime is closed")
            self._calls += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._state:
                self._calls -= 1
                self._state.notify_all()

    def _refuse_reactor_thread(self) -> None:
        if threading.get_ident() == self._reactor.ident:
            raise RuntimeError("the event callback must not call its runtime: the call would wait "
                               "for the reactor thread, which is running the callback")

    def spawn(self, name: str, argv: Sequence[PathLike], **options: Any) -> Agent:
        """Starts an agent called ``name`` running ``argv`` (the program first, looked up in
        ``PATH``) and returns its handle.

        Keywords:

        - ``env``: variables added to the agent's minimal environment (PATH, HOME, LANG,
          CLOVE_FD, CLOVE_AGENT_ID); the host's own environment is never passed on;
        - ``cwd``: its working directory (default: the host's);
        - ``level``: its permission level, "unrestricted", "standard" (default), "sandboxed",
          "readonly" or "minimal";
        - ``stdio``: :attr:`Stdio.INHERIT` (default), :attr:`Stdio.NULL` or a file path to append
          both streams to;
        - ``restart``: a :class:`Restart`, or a policy name with the default budget;
        - ``limits``: :class:`Limits` (memory, pids, CPU), enforced through a cgroup;
        - ``sandboxed``: run it in the process sandbox (namespaces, cgroup, seccomp, landlock);
        - ``network``: let a sandboxed agent reach the network;
        - ``profile``: "permissive", "moderate" or "restrictive": turns the sandbox on and fills
          the limits and network not given (see docs/security.md);
        - ``mounts``: :class:`Mount` objects or ``(host, guest[, read_only])`` tuples to show host
          paths inside the sandbox;
        - ``vm``: run it in its own microVM instead, with ``vcpus`` vCPUs (default 1); its memory
          limit is the VM's RAM (256 MiB when not given). The runtime's ``vm_kernel`` and
          ``vm_initramfs`` (or ``CLOVE_VM_KERNEL`` and ``CLOVE_VM_INITRAMFS``) are what it boots.

        Raises :class:`InvalidArgument` for a bad option, :class:`NotFound` for a missing program.
        """
        lib = _lib.load()
        agent_id = ctypes.c_uint64()
        with spawn_options(name, argv, **options) as opts, self._live() as handle:
            lib.clove_runtime_spawn(handle, opts, byref(agent_id))
        return Agent(self, agent_id.value, name)

    def prewarm(self, count: int, name: str, argv: Sequence[PathLike], **options: Any) -> None:
        """Keeps ``count`` sandboxes shaped like these options ready, so that a sandboxed spawn of
        that shape skips building one; returns once they are ready. Takes the keywords of
        :meth:`spawn`, and ``sandboxed=True`` (or a profile) is required."""
        lib = _lib.load()
        with spawn_options(name, argv, **options) as opts, self._live() as handle:
            lib.clove_runtime_prewarm(handle, opts, c_unsigned(count, 64, "count"))

    def listen(self, path: PathLike, *, max_level: Optional[str] = None,
               token: Optional[str] = None) -> None:
        """Serves agents started elsewhere on a Unix socket at ``path`` (mode 0600). They start at,
        and never rise above, ``max_level`` (default "standard"). Peers with this process's uid
        are admitted; others must present ``token`` (without one they are refused)."""
        with self._live() as handle:
            _lib.load().clove_runtime_listen(handle, c_str(path), optional_c_str(max_level),
                                             optional_c_str(token))

    def kill(self, agent: AgentRef) -> None:
        """Kills an agent and everything it started (SIGKILL to its process group)."""
        with self._live() as handle:
            _lib.load().clove_runtime_kill(handle, _agent_id(agent))

    def pause(self, agent: AgentRef) -> None:
        """Stops an agent's processes until :meth:`resume`; :class:`Conflict` if it has ended."""
        with self._live() as handle:
            _lib.load().clove_runtime_pause(handle, _agent_id(agent))

    def resume(self, agent: AgentRef) -> None:
        """Continues a paused agent."""
        with self._live() as handle:
            _lib.load().clove_runtime_resume(handle, _agent_id(agent))

    def wait(self, agent: AgentRef, timeout: Optional[float] = None) -> Exit:
        """Waits for an agent to end and says how it ended. ``timeout`` is in seconds (None:
        forever); :class:`Timeout` (a ``TimeoutError``) means it is still running."""
        lib, agent_id, out = _lib.load(), _agent_id(agent), _lib.clove_exit()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                with self._live() as handle:
                    lib.clove_runtime_wait(handle, agent_id, _slice_ms(deadline), byref(out))
                return Exit.from_c(out)
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"agent {agent_id} still running after {timeout} s") from None

    def list(self) -> List[AgentInfo]:
        """Every agent the runtime knows, running or recently ended."""
        lib = _lib.load()
        agents = _lib.agent_list_ptr()
        with self._live() as handle:
            lib.clove_runtime_list(handle, byref(agents))
        try:
            info = _lib.clove_agent_info()
            result = []
            for index in range(lib.clove_agent_list_len(agents)):
                lib.clove_agent_list_get(agents, index, byref(info))
                result.append(AgentInfo.from_c(info))  # copies the strings the list owns
            return result
        finally:
            lib.clove_agent_list_free(agents)

    def metrics(self, agent: AgentRef) -> Metrics:
        """An agent's figures: process, requests and, when it has one, its cgroup's counters."""
        out = _lib.clove_agent_metrics()
        with self._live() as handle:
            _lib.load().clove_runtime_agent_metrics(handle, _agent_id(agent), byref(out))
        return Metrics.from_c(out)

    def audit_log(self, *, category: Optional[str] = None, agent: Optional[AgentRef] = None,
                  since_id: int = 0, limit: int = 0) -> List[Dict[str, Any]]:
        """Audit entries, oldest first: of ``category`` ("security", "lifecycle"; None: any), of
        ``agent`` (None: any), with an id above ``since_id``, the newest ``limit`` of them (0:
        100; at most 1 000). Each is a dict with ``id``, ``timestamp_ms``, ``category``,
        ``event``, ``agent_id``, ``agent_name``, ``success`` and ``details`` (a dict)."""
        lib = _lib.load()
        text = _lib.owned_string()
        with self._live() as handle:
            lib.clove_runtime_audit_log_json(
                handle, optional_c_str(category), 0 if agent is None else _agent_id(agent),
                c_unsigned(since_id, 64, "since_id"), c_unsigned(limit, 32, "limit"), byref(text))
        try:
            entries = json.loads(ctypes.string_at(text))
        finally:
            lib.clove_string_free(text)
        for entry in entries:
            entry["details"] = json.loads(entry.pop("details_json"))
        return entries

    def subscribe(self, *event_types: str) -> None:
        """Adds the agents' bus events of these types to :meth:`events` and :meth:`on_event`:
        "MESSAGE_RECEIVED", "STATE_CHANGED", "SYSCALL_BLOCKED", "RESOURCE_WARNING", "CUSTOM", a
        custom event's own name, or "*" for all. Lifecycle events always come."""
        for event_type in event_types:
            with self._live() as handle:
                _lib.load().clove_runtime_subscribe(handle, c_str(event_type))

    def unsubscribe(self, *event_types: str) -> None:
        """Removes bus event types :meth:`subscribe` added."""
        for event_type in event_types:
            with self._live() as handle:
                _lib.load().clove_runtime_unsubscribe(handle, c_str(event_type))

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The oldest unread event, waiting up to ``timeout`` seconds (None: forever);
        None when none came. Each event goes to one reader only; when the host falls behind, the
        oldest are dropped (see ``event_capacity``)."""
        lib, out = _lib.load(), _lib.clove_event()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                with self._live() as handle:
                    lib.clove_runtime_next_event(handle, _slice_ms(deadline), byref(out))
                return Event.from_c(out)
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Lifecycle events as they come, until none comes for ``timeout`` seconds (None: until
        the runtime is closed)::

            for event in rt.events(timeout=5):
                print(event.agent_id, event.kind.name)
        """
        while not self.closed:
            try:
                event = self.next_event(timeout)
            except ValueError:
                if self.closed:
                    return  # closed by another thread meanwhile
                raise
            if event is None:
                return
            yield event

    def on_event(self, callback: Optional[EventCallback]) -> None:
        """Calls ``callback(event)`` for every lifecycle event, replacing any callback set before;
        None removes it. Events still queue for :meth:`events` too.

        The callback runs on the runtime's reactor thread, which serves every agent: it must
        return quickly and must not call this runtime (that raises ``RuntimeError``, since the
        call would deadlock); hand events to another thread, e.g. through a ``queue.Queue``. An
        exception it raises is logged on the "clove" logger and dropped. Once this method
        returns, the previous callback is not running and will not run again.
        """
        if callback is None:
            trampoline = _lib.clove_event_callback()  # NULL: clears the callback
        else:
            trampoline = _trampoline(callback, self._reactor)
        with self._callback_lock, self._live() as handle:
            _lib.load().clove_runtime_set_event_callback(handle, trampoline, None)
            self._callback = trampoline

    def on_think(self, handler: Optional[ThinkHandler]) -> None:
        """Answers every agent's THINK with ``handler(request)`` instead of the LLM provider,
        replacing any handler set before; None removes it. It gets a :class:`ThinkRequest` and
        returns a :class:`ThinkAnswer` or the text alone; an exception it raises fails that THINK
        with its message.

        It runs on the runtime's THINK worker threads, several at once when several agents think
        (never on the reactor thread): it may call this runtime's other methods, but not
        ``on_think`` nor ``close``. Once this method returns, the previous handler is not running
        and will not run again.
        """
        trampoline = _lib.clove_think_handler() if handler is None else _think_trampoline(handler)
        with self._think_lock, self._live() as handle:
            _lib.load().clove_runtime_set_think_handler(handle, trampoline, None)
            self._think = trampoline


class Agent:
    """A handle to an agent started by :meth:`Runtime.spawn`. The agent's life is not tied to the
    handle: dropping it leaves the agent running until it ends or the runtime closes. Use it as a
    context manager to kill the agent on leaving the block."""

    __slots__ = ("runtime", "id", "name")

    def __init__(self, runtime: Runtime, agent_id: int, name: str):
        self.runtime = runtime
        self.id = agent_id
        self.name = name

    def __repr__(self) -> str:
        return f"<clove.Agent {self.name!r} id={self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Agent) and (other.runtime, other.id) == (self.runtime, self.id)

    def __hash__(self) -> int:
        return hash((id(self.runtime), self.id))

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kills the agent unless it has ended, and waits until it has. Does nothing once the
        runtime is closed (closing killed it)."""
        if self.runtime.closed:
            return
        try:
            self.kill()  # an agent that has ended is killed without error
        except NotFound:
            return  # ended long ago and forgotten
        self.wait()

    def kill(self) -> None:
        """See :meth:`Runtime.kill`."""
        self.runtime.kill(self)

    def pause(self) -> None:
        """See :meth:`Runtime.pause`."""
        self.runtime.pause(self)

    def resume(self) -> None:
        """See :meth:`Runtime.resume`."""
        self.runtime.resume(self)

    def wait(self, timeout: Optional[float] = None) -> Exit:
        """See :meth:`Runtime.wait`."""
        return self.runtime.wait(self, timeout)

    def metrics(self) -> Metrics:
        """See :meth:`Runtime.metrics`."""
        return self.runtime.metrics(self)

    def info(self) -> Optional[AgentInfo]:
        """Its entry in :meth:`Runtime.list`, or None once the runtime has forgotten it."""
        return next((info for info in self.runtime.list() if info.id == self.id), None)


AgentRef = Union[Agent, int]


def _agent_id(agent: AgentRef) -> int:
    return agent.id if isinstance(agent, Agent) else agent


def _slice_ms(deadline: Optional[float]) -> int:
    if deadline is None:
        return WAIT_SLICE_MS
    return max(0, min(WAIT_SLICE_MS, int((deadline - time.monotonic()) * 1000)))


def _trampoline(callback: EventCallback, reactor: _ReactorThread) -> Any:
    """``callback`` as a C function. It copies the event (valid only during the call) and lets no
    exception reach C."""

    def call(event: Any, _user_data: Optional[int]) -> None:
        reactor.ident = threading.get_ident()
        try:
            callback(Event.from_c(event.contents))
        except BaseException:  # noqa: BLE001 - C cannot unwind a Python exception
            log.exception("clove event callback %r raised", callback)

    return _lib.clove_event_callback(call)


def _think_trampoline(handler: ThinkHandler) -> Any:
    """``handler`` as a C think handler: the request copied in, the answer set through the
    setters (which copy it), and no exception reaching C."""

    def call(request: Any, answer: Any, _user_data: Optional[int]) -> None:
        lib = _lib.load()
        try:
            result = handler(ThinkRequest.from_c(request.contents))
            result = ThinkAnswer(result) if isinstance(result, str) else result
            lib.clove_think_answer_set_text(answer, c_str(result.text))
            if result.model:
                lib.clove_think_answer_set_model(answer, c_str(result.model))
            tokens = (c_unsigned(result.input_tokens, 64, "input_tokens"),
                      c_unsigned(result.output_tokens, 64, "output_tokens"))
            lib.clove_think_answer_set_usage(answer, *tokens)
        except BaseException as error:  # noqa: BLE001 - C cannot unwind a Python exception
            message = f"{type(error).__name__}: {error}".replace("\0", " ")
            try:
                lib.clove_think_answer_set_error(answer, message.encode())
            except BaseException:  # noqa: BLE001
                log.exception("clove think handler %r raised", handler)

    return _lib.clove_think_handler(call)


def _free_later(handle: ctypes._Pointer[_lib.clove_runtime], callback: Any) -> None:
    # `callback` is only held: C may call it until clove_runtime_free returns.
    _lib.load().clove_runtime_free(handle)


_open_runtimes: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


@atexit.register
def _close_open_runtimes() -> None:
    # Stop every reactor thread before the interpreter finalizes, so no callback runs into a
    # half-torn-down interpreter and no agent outlives its host.
    for runtime in list(_open_runtimes):
        runtime.close()
