"""Errors: one :class:`CloveError` subclass per ``clove_status`` code of ``include/clove.h``.

A failed C call raises the subclass for its status, with ``clove_last_error()`` as the message
(it names the C function that failed). Where a builtin exception means the same thing, the class
derives from it too, so ``except TimeoutError`` or ``except ValueError`` work as expected.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Dict, Type


class Status(IntEnum):
    """``clove_status``: what every C call returns. The numbers never change."""

    OK = 0
    BAD_FRAME = 1
    UNKNOWN_OPCODE = 2
    BAD_PAYLOAD = 3
    PERMISSION_DENIED = 4
    NOT_FOUND = 5
    TIMEOUT = 6
    LIMIT_EXCEEDED = 7
    IO = 8
    UNSUPPORTED = 9
    INVALID_ARGUMENT = 10
    CONFLICT = 11
    INTERNAL = 12


class CloveError(Exception):
    """A call into libclove failed. ``status`` is its :class:`Status`, or the raw number for a
    status newer than this binding."""

    status: int


class BadFrame(CloveError):
    """Bytes that are not a frame."""

    status = Status.BAD_FRAME


class UnknownOpcode(CloveError):
    status = Status.UNKNOWN_OPCODE


class BadPayload(CloveError):
    status = Status.BAD_PAYLOAD


class PermissionDenied(CloveError, PermissionError):
    """A policy refused."""

    status = Status.PERMISSION_DENIED


class NotFound(CloveError, LookupError):
    """No agent has this id (it never existed, or it ended and was forgotten), or a missing
    program or file."""

    status = Status.NOT_FOUND


class Timeout(CloveError, TimeoutError):
    """The wait ended before the agent did."""

    status = Status.TIMEOUT


class LimitExceeded(CloveError):
    status = Status.LIMIT_EXCEEDED


class IoError(CloveError, OSError):
    """A system call failed."""

    status = Status.IO


class Unsupported(CloveError):
    status = Status.UNSUPPORTED


class InvalidArgument(CloveError, ValueError):
    """A string that is not UTF-8 or holds NUL, an unknown name, an empty argv, a relative path
    where an absolute one is needed."""

    status = Status.INVALID_ARGUMENT


class Conflict(CloveError):
    """The agent's state forbids the request (e.g. pausing an agent that has ended)."""

    status = Status.CONFLICT


class InternalError(CloveError):
    """A bug in Clove (a caught panic), or a runtime whose reactor stopped."""

    status = Status.INTERNAL


#: The exception class of each failure status.
ERROR_CLASSES: Dict[int, Type[CloveError]] = {
    cls.status: cls for cls in CloveError.__subclasses__()
}


def error_for(status: int, message: str) -> CloveError:
    """The exception for a failed call that returned ``status``."""
    cls = ERROR_CLASSES.get(status)
    if cls is not None:
        return cls(message)
    error = CloveError(message)
    error.status = status
    return error


class LibraryError(OSError):
    """libclove could not be found or loaded, or its ABI is not the one this binding speaks."""
