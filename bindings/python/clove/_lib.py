"""Finding libclove, and the ctypes mirror of ``include/clove.h``.

Classes here carry the C names, so ``tests/test_host_header.py`` can compare every prototype, enum
and struct with the header; change both together.

The library is loaded on first use, not at import: ``import clove`` works without it, and the
error names every place that was searched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_int,
                    c_int32, c_int64, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p)
from pathlib import Path
from typing import Dict, List, Tuple

from .errors import LibraryError, Status, error_for

#: ``CLOVE_ABI_VERSION``: the loaded library's ``clove_abi_version()`` must equal it.
ABI_VERSION = 1
LIBRARY_FILE = "libclove.so"
BUNDLED_LIBRARY = Path(__file__).with_name(LIBRARY_FILE)

# C enums are int-sized; their values are the IntEnums in errors.py and values.py.
clove_status = c_int
clove_stdio = c_int
clove_agent_state = c_int
clove_event_kind = c_int


class clove_runtime(Structure):
    """Opaque."""


class clove_runtime_options(Structure):
    """Opaque."""


class clove_spawn_options(Structure):
    """Opaque."""


class clove_agent_list(Structure):
    """Opaque."""


class clove_think_answer(Structure):
    """Opaque."""


class clove_exit(Structure):
    _fields_ = [
        ("has_code", c_bool),
        ("code", c_int32),
        ("signal", c_int32),
        ("oom_killed", c_bool),
    ]


class clove_agent_info(Structure):
    _fields_ = [
        ("id", c_uint64),
        ("parent", c_uint64),
        ("pid", c_uint32),
        ("state", clove_agent_state),
        ("uptime_ms", c_uint64),
        ("name", c_char_p),
        ("level", c_char_p),
        ("has_exit", c_bool),
        ("exit", clove_exit),
    ]


class clove_event(Structure):
    _fields_ = [
        ("agent_id", c_uint64),
        ("kind", clove_event_kind),
        ("pid", c_uint32),
        ("exit", clove_exit),
        ("attempt", c_uint32),
        ("delay_ms", c_uint64),
        ("timestamp_ms", c_uint64),
        ("name", c_char_p),
        ("data_json", c_char_p),
    ]


class clove_agent_metrics(Structure):
    _fields_ = [
        ("uptime_ms", c_uint64),
        ("cpu_time_us", c_uint64),
        ("rss_bytes", c_uint64),
        ("threads", c_uint32),
        ("fds", c_uint32),
        ("syscalls", c_uint64),
        ("has_cgroup", c_bool),
        ("cgroup_cpu_usage_us", c_uint64),
        ("cgroup_cpu_throttled_us", c_uint64),
        ("cgroup_memory_current", c_uint64),
        ("cgroup_memory_peak", c_uint64),
        ("cgroup_pids_current", c_uint64),
        ("cgroup_oom_kills", c_uint64),
    ]


class clove_think_request(Structure):
    _fields_ = [
        ("agent_id", c_uint64),
        ("agent_name", c_char_p),
        ("prompt", c_char_p),
        ("system_instruction", c_char_p),
        ("model", c_char_p),
        ("image", POINTER(c_uint8)),
        ("image_len", c_size_t),
        ("image_mime_type", c_char_p),
        ("has_temperature", c_bool),
        ("temperature", c_double),
        ("max_tokens", c_uint32),
        ("thinking_level", c_char_p),
    ]


clove_event_callback = CFUNCTYPE(None, POINTER(clove_event), c_void_p)
clove_think_handler = CFUNCTYPE(None, POINTER(clove_think_request), POINTER(clove_think_answer),
                                c_void_p)

# `const char *` arguments are c_char_p; a string the caller must free is an owned_string, so that
# ctypes keeps the address for clove_string_free instead of converting it to bytes.
owned_string = POINTER(c_char)
runtime_ptr = POINTER(clove_runtime)
runtime_options_ptr = POINTER(clove_runtime_options)
spawn_options_ptr = POINTER(clove_spawn_options)
agent_list_ptr = POINTER(clove_agent_list)
think_answer_ptr = POINTER(clove_think_answer)

PROTOTYPES: Dict[str, Tuple[object, List[object]]] = {
    "clove_abi_version": (c_uint32, []),
    "clove_version": (c_char_p, []),
    "clove_last_error": (c_char_p, []),
    "clove_runtime_options_new": (clove_status, [POINTER(runtime_options_ptr)]),
    "clove_runtime_options_free": (None, [runtime_options_ptr]),
    "clove_runtime_options_set_home": (clove_status, [runtime_options_ptr, c_char_p]),
    "clove_runtime_options_set_max_payload": (clove_status, [runtime_options_ptr, c_uint32]),
    "clove_runtime_options_set_audit_capacity": (clove_status, [runtime_options_ptr, c_size_t]),
    "clove_runtime_options_set_event_capacity": (clove_status, [runtime_options_ptr, c_size_t]),
    "clove_runtime_options_set_exited_retention": (clove_status, [runtime_options_ptr, c_size_t]),
    "clove_runtime_options_set_audit_file": (clove_status, [runtime_options_ptr, c_char_p]),
    "clove_runtime_options_set_state_path": (clove_status, [runtime_options_ptr, c_char_p]),
    "clove_runtime_new": (clove_status, [runtime_options_ptr, POINTER(runtime_ptr)]),
    "clove_runtime_free": (None, [runtime_ptr]),
    "clove_runtime_listen": (clove_status, [runtime_ptr, c_char_p, c_char_p, c_char_p]),
    "clove_runtime_kill": (clove_status, [runtime_ptr, c_uint64]),
    "clove_runtime_pause": (clove_status, [runtime_ptr, c_uint64]),
    "clove_runtime_resume": (clove_status, [runtime_ptr, c_uint64]),
    "clove_runtime_wait": (clove_status, [runtime_ptr, c_uint64, c_int64, POINTER(clove_exit)]),
    "clove_spawn_options_new": (clove_status, [c_char_p, POINTER(spawn_options_ptr)]),
    "clove_spawn_options_free": (None, [spawn_options_ptr]),
    "clove_spawn_options_add_arg": (clove_status, [spawn_options_ptr, c_char_p]),
    "clove_spawn_options_set_env": (clove_status, [spawn_options_ptr, c_char_p, c_char_p]),
    "clove_spawn_options_set_cwd": (clove_status, [spawn_options_ptr, c_char_p]),
    "clove_spawn_options_set_level": (clove_status, [spawn_options_ptr, c_char_p]),
    "clove_spawn_options_set_stdio": (clove_status, [spawn_options_ptr, clove_stdio, c_char_p]),
    "clove_spawn_options_set_restart": (
        clove_status, [spawn_options_ptr, c_char_p, c_uint32, c_uint32]),
    "clove_spawn_options_set_limits": (
        clove_status, [spawn_options_ptr, c_uint64, c_uint32, c_uint64, c_uint64]),
    "clove_spawn_options_set_sandboxed": (clove_status, [spawn_options_ptr, c_bool]),
    "clove_spawn_options_set_vm": (clove_status, [spawn_options_ptr, c_uint32]),
    "clove_spawn_options_set_network": (clove_status, [spawn_options_ptr, c_bool]),
    "clove_spawn_options_set_profile": (clove_status, [spawn_options_ptr, c_char_p]),
    "clove_spawn_options_add_mount": (
        clove_status, [spawn_options_ptr, c_char_p, c_char_p, c_bool]),
    "clove_runtime_spawn": (clove_status, [runtime_ptr, spawn_options_ptr, POINTER(c_uint64)]),
    "clove_runtime_prewarm": (clove_status, [runtime_ptr, spawn_options_ptr, c_size_t]),
    "clove_runtime_list": (clove_status, [runtime_ptr, POINTER(agent_list_ptr)]),
    "clove_agent_list_len": (c_size_t, [agent_list_ptr]),
    "clove_agent_list_get": (clove_status, [agent_list_ptr, c_size_t, POINTER(clove_agent_info)]),
    "clove_agent_list_free": (None, [agent_list_ptr]),
    "clove_runtime_next_event": (clove_status, [runtime_ptr, c_int64, POINTER(clove_event)]),
    "clove_runtime_set_event_callback": (
        clove_status, [runtime_ptr, clove_event_callback, c_void_p]),
    "clove_runtime_subscribe": (clove_status, [runtime_ptr, c_char_p]),
    "clove_runtime_unsubscribe": (clove_status, [runtime_ptr, c_char_p]),
    "clove_runtime_audit_log_json": (
        clove_status, [runtime_ptr, c_char_p, c_uint64, c_uint64, c_uint32, POINTER(owned_string)]),
    "clove_string_free": (None, [owned_string]),
    "clove_runtime_agent_metrics": (
        clove_status, [runtime_ptr, c_uint64, POINTER(clove_agent_metrics)]),
    "clove_runtime_options_set_llm": (
        clove_status, [runtime_options_ptr, c_char_p, c_char_p, c_char_p, c_char_p]),
    "clove_runtime_options_set_http_refuse_non_public": (
        clove_status, [runtime_options_ptr, c_bool]),
    "clove_runtime_options_set_vm_image": (
        clove_status, [runtime_options_ptr, c_char_p, c_char_p]),
    "clove_think_answer_set_text": (clove_status, [think_answer_ptr, c_char_p]),
    "clove_think_answer_set_model": (clove_status, [think_answer_ptr, c_char_p]),
    "clove_think_answer_set_usage": (clove_status, [think_answer_ptr, c_uint64, c_uint64]),
    "clove_think_answer_set_error": (clove_status, [think_answer_ptr, c_char_p]),
    "clove_runtime_set_think_handler": (
        clove_status, [runtime_ptr, clove_think_handler, c_void_p]),
}


@functools.lru_cache(maxsize=None)
def load() -> ctypes.CDLL:
    """The loaded library with every prototype declared. A call returning a failed ``clove_status``
    raises the matching :class:`~clove.errors.CloveError`.

    ctypes.CDLL (not PyDLL) releases the GIL during each call: a blocking wait lets other Python
    threads run, and the event callback can take the GIL on the reactor thread.
    """
    lib = _open()
    for name, (restype, argtypes) in PROTOTYPES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
        if restype is clove_status:  # every int the header returns is a clove_status
            function.errcheck = _raise_on_failure
    version = lib.clove_abi_version()
    if version != ABI_VERSION:
        raise LibraryError(
            f"{lib._name} has ABI version {version}; this binding speaks {ABI_VERSION}")
    return lib


def _raise_on_failure(status: int, function: object, args: object) -> int:
    # errcheck runs on the calling thread right after the call, so the thread-local last error is
    # the one this call set.
    if status != Status.OK:
        message = load().clove_last_error().decode("utf-8", errors="replace")
        raise error_for(status, message)
    return status


def _open() -> ctypes.CDLL:
    """Loads libclove from, in order: ``$CLOVE_LIB``, the copy bundled in this package,
    ``ctypes.util.find_library("clove")``, then the dynamic loader's own search for libclove.so."""
    explicit = os.environ.get("CLOVE_LIB")
    if explicit:
        try:
            return ctypes.CDLL(explicit)
        except OSError as error:
            raise LibraryError(f"CLOVE_LIB={explicit} cannot be loaded: {error}") from error
    tried = ["CLOVE_LIB (unset)"]
    if BUNDLED_LIBRARY.exists():
        return ctypes.CDLL(str(BUNDLED_LIBRARY))
    tried.append(f"{BUNDLED_LIBRARY} (absent)")
    found = ctypes.util.find_library("clove")
    if found:
        return ctypes.CDLL(found)
    tried.append('ctypes.util.find_library("clove") (nothing)')
    try:
        return ctypes.CDLL(LIBRARY_FILE)
    except OSError as error:
        tried.append(f"the dynamic loader's search path ({error})")
    raise LibraryError("libclove not found; set CLOVE_LIB to the path of libclove.so (built by "
                       "`cargo build -p clove-ffi`). Looked at: " + "; ".join(tried))
