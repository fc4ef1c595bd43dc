"""What to start as an agent: the keywords of :meth:`Runtime.spawn() <clove.Runtime.spawn>`,
turned into a ``clove_spawn_options`` handle."""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from ctypes import byref
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterator, Mapping, Optional, Sequence, Tuple, Union

from . import _lib
from .errors import InvalidArgument

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class Stdio(IntEnum):
    """``clove_stdio``: where an agent's stdout and stderr go. Pass a path for FILE."""

    INHERIT = 0
    """The host's own stdout and stderr."""
    NULL = 1
    """``/dev/null``."""
    FILE = 2
    """Appended to a file, both streams."""


@dataclass(frozen=True)
class Limits:
    """Resource limits, enforced through the agent's cgroup; None leaves one unset."""

    memory_bytes: Optional[int] = None
    max_pids: Optional[int] = None
    cpu_quota_us: Optional[int] = None
    cpu_period_us: Optional[int] = None


@dataclass(frozen=True)
class Restart:
    """Restart the agent when it ends: ``policy`` is "never", "on-failure" (a non-zero code or a
    signal) or "always"; after ``max_restarts`` within ``window_s`` seconds it is given up (an
    ESCALATED event)."""

    policy: str = "on-failure"
    max_restarts: int = 5
    window_s: int = 300


@dataclass(frozen=True)
class Llm:
    """The LLM provider THINK asks when no think handler is set, instead of the one the
    environment names: ``provider`` is "openai" (any OpenAI-compatible server), "gemini" or
    "anthropic", or None for none at all; the others default to the provider's (no key)."""

    provider: Optional[str]
    base_url: Optional[str] = None
    api_key: Optional[str] = None
    model: Optional[str] = None


@dataclass(frozen=True)
class Mount:
    """Show host path ``host`` at ``guest`` inside a sandboxed agent; both absolute."""

    host: PathLike
    guest: PathLike
    read_only: bool = True


def c_str(value: PathLike) -> bytes:
    """``value`` as the NUL-terminated UTF-8 that C reads. ctypes would cut a string at an inner
    NUL without a word, so that is refused here."""
    text = os.fspath(value)
    data = text if isinstance(text, bytes) else text.encode()
    if b"\0" in data:
        raise InvalidArgument(f"{value!r} holds a NUL character")
    return data


def optional_c_str(value: Optional[PathLike]) -> Optional[bytes]:
    return None if value is None else c_str(value)


def c_unsigned(value: int, bits: int, what: str) -> int:
    """``value`` checked to fit a C unsigned integer of ``bits`` bits: ctypes would wrap it
    silently (-1 would become the largest limit)."""
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise InvalidArgument(f"{what} {value!r} is not an integer in [0, 2**{bits})")
    return value


@contextmanager
def spawn_options(
    name: str,
    argv: Sequence[PathLike],
    *,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[PathLike] = None,
    level: Optional[str] = None,
    stdio: Union[Stdio, PathLike] = Stdio.INHERIT,
    restart: Union[Restart, str, None] = None,
    limits: Optional[Limits] = None,
    sandboxed: bool = False,
    network: bool = False,
    profile: Optional[str] = None,
    mounts: Sequence[Union[Mount, Tuple[PathLike, PathLike], Tuple[PathLike, PathLike, bool]]] = (),
    vm: bool = False,
    vcpus: int = 1,
) -> Iterator[ctypes._Pointer[_lib.clove_spawn_options]]:
    """A ``clove_spawn_options`` handle holding these options, freed on leaving the block.
    :meth:`Runtime.spawn() <clove.Runtime.spawn>` documents each keyword."""
    if isinstance(argv, (str, bytes)):
        raise InvalidArgument(f"argv {argv!r} is one string; pass a list: the program, then its "
                              "arguments")
    lib = _lib.load()
    opts = _lib.spawn_options_ptr()
    lib.clove_spawn_options_new(c_str(name), byref(opts))
    try:
        for arg in argv:
            lib.clove_spawn_options_add_arg(opts, c_str(arg))
        for key, value in (env or {}).items():
            lib.clove_spawn_options_set_env(opts, c_str(key), c_str(value))
        if cwd is not None:
            lib.clove_spawn_options_set_cwd(opts, c_str(cwd))
        if level is not None:
            lib.clove_spawn_options_set_level(opts, c_str(level))
        if isinstance(stdio, Stdio):
            lib.clove_spawn_options_set_stdio(opts, stdio, None)
        else:
            lib.clove_spawn_options_set_stdio(opts, Stdio.FILE, c_str(stdio))
        if restart is not None:
            restart = Restart(restart) if isinstance(restart, str) else restart
            lib.clove_spawn_options_set_restart(
                opts, c_str(restart.policy), c_unsigned(restart.max_restarts, 32, "max_restarts"),
                c_unsigned(restart.window_s, 32, "window_s"))
        if limits is not None:
            lib.clove_spawn_options_set_limits(
                opts, c_unsigned(limits.memory_bytes or 0, 64, "memory_bytes"),
                c_unsigned(limits.max_pids or 0, 32, "max_pids"),
                c_unsigned(limits.cpu_quota_us or 0, 64, "cpu_quota_us"),
                c_unsigned(limits.cpu_period_us or 0, 64, "cpu_period_us"))
        lib.clove_spawn_options_set_sandboxed(opts, sandboxed)
        lib.clove_spawn_options_set_network(opts, network)
        for mount in mounts:
            mount = mount if isinstance(mount, Mount) else Mount(*mount)
            lib.clove_spawn_options_add_mount(opts, c_str(mount.host), c_str(mount.guest),
                                              mount.read_only)
        if vm:
            lib.clove_spawn_options_set_vm(opts, c_unsigned(vcpus, 32, "vcpus"))
        # Last: a profile fills only the limits and network not set yet, and turns the sandbox on.
        if profile is not None:
            lib.clove_spawn_options_set_profile(opts, c_str(profile))
        yield opts
    finally:
        lib.clove_spawn_options_free(opts)


@contextmanager
def runtime_options(
    *,
    home: Optional[PathLike] = None,
    max_payload: Optional[int] = None,
    audit_capacity: Optional[int] = None,
    event_capacity: Optional[int] = None,
    exited_retention: Optional[int] = None,
    audit_file: Optional[PathLike] = None,
    state_path: Optional[PathLike] = None,
    llm: Optional[Llm] = None,
    http_refuse_non_public: Optional[bool] = None,
    vm_kernel: Optional[PathLike] = None,
    vm_initramfs: Optional[PathLike] = None,
) -> Iterator[ctypes._Pointer[_lib.clove_runtime_options]]:
    """A ``clove_runtime_options`` handle with these set (None keeps the library's default), freed
    on leaving the block. :class:`Runtime <clove.Runtime>` documents each keyword."""
    lib = _lib.load()
    opts = _lib.runtime_options_ptr()
    lib.clove_runtime_options_new(byref(opts))
    try:
        if home is not None:
            lib.clove_runtime_options_set_home(opts, c_str(home))
        if max_payload is not None:
            max_payload = c_unsigned(max_payload, 32, "max_payload")
            lib.clove_runtime_options_set_max_payload(opts, max_payload)
        if audit_capacity is not None:
            audit_capacity = c_unsigned(audit_capacity, 64, "audit_capacity")
            lib.clove_runtime_options_set_audit_capacity(opts, audit_capacity)
        if event_capacity is not None:
            event_capacity = c_unsigned(event_capacity, 64, "event_capacity")
            lib.clove_runtime_options_set_event_capacity(opts, event_capacity)
        if exited_retention is not None:
            exited_retention = c_unsigned(exited_retention, 64, "exited_retention")
            lib.clove_runtime_options_set_exited_retention(opts, exited_retention)
        if audit_file is not None:
            lib.clove_runtime_options_set_audit_file(opts, c_str(audit_file))
        if state_path is not None:
            lib.clove_runtime_options_set_state_path(opts, c_str(state_path))
        if llm is not None:
            lib.clove_runtime_options_set_llm(
                opts, optional_c_str(llm.provider), optional_c_str(llm.base_url),
                optional_c_str(llm.api_key), optional_c_str(llm.model))
        if http_refuse_non_public is not None:
            lib.clove_runtime_options_set_http_refuse_non_public(opts, http_refuse_non_public)
        if vm_kernel is not None or vm_initramfs is not None:
            lib.clove_runtime_options_set_vm_image(opts, optional_c_str(vm_kernel),
                                                   optional_c_str(vm_initramfs))
        yield opts
    finally:
        lib.clove_runtime_options_free(opts)
