package clove

// #include "clove.h"
import "C"

import (
	"errors"
	"fmt"
	"runtime"
)

// The sentinel errors, one per clove_status. A failed call returns an *Error that wraps one of
// them, so errors.Is(err, ErrNotFound) tells what went wrong while err.Error() says where.
var (
	ErrBadFrame         = errors.New("clove: bad frame")
	ErrUnknownOpcode    = errors.New("clove: unknown opcode")
	ErrBadPayload       = errors.New("clove: bad payload")
	ErrPermissionDenied = errors.New("clove: permission denied")
	ErrNotFound         = errors.New("clove: not found")
	ErrTimeout          = errors.New("clove: timeout")
	ErrLimitExceeded    = errors.New("clove: limit exceeded")
	ErrIO               = errors.New("clove: i/o error")
	ErrUnsupported      = errors.New("clove: unsupported")
	ErrInvalidArgument  = errors.New("clove: invalid argument")
	ErrConflict         = errors.New("clove: conflict")
	ErrInternal         = errors.New("clove: internal error")
)

// ErrClosed is returned by every call on a Runtime after Close.
var ErrClosed = errors.New("clove: runtime is closed")

// statusErrors maps each clove_status (its index) to its sentinel.
var statusErrors = [...]error{
	C.CLOVE_STATUS_BAD_FRAME:         ErrBadFrame,
	C.CLOVE_STATUS_UNKNOWN_OPCODE:    ErrUnknownOpcode,
	C.CLOVE_STATUS_BAD_PAYLOAD:       ErrBadPayload,
	C.CLOVE_STATUS_PERMISSION_DENIED: ErrPermissionDenied,
	C.CLOVE_STATUS_NOT_FOUND:         ErrNotFound,
	C.CLOVE_STATUS_TIMEOUT:           ErrTimeout,
	C.CLOVE_STATUS_LIMIT_EXCEEDED:    ErrLimitExceeded,
	C.CLOVE_STATUS_IO:                ErrIO,
	C.CLOVE_STATUS_UNSUPPORTED:       ErrUnsupported,
	C.CLOVE_STATUS_INVALID_ARGUMENT:  ErrInvalidArgument,
	C.CLOVE_STATUS_CONFLICT:          ErrConflict,
	C.CLOVE_STATUS_INTERNAL:          ErrInternal,
}

// Error is a failed call: the clove_status it returned and libclove's message for it, which
// starts with the C function's name.
type Error struct {
	// Status is the clove_status value, CLOVE_STATUS_* in include/clove.h.
	Status int
	// Message is clove_last_error() as it was right after the call.
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("clove: status %d", e.Status)
	}
	return e.Message
}

// Unwrap gives the sentinel of the status; nil for a status newer than this package.
func (e *Error) Unwrap() error {
	if e.Status > 0 && e.Status < len(statusErrors) {
		return statusErrors[e.Status]
	}
	return nil
}

// check makes one C call and turns its status into an error. libclove keeps the last error's
// message per OS thread, so the goroutine stays on its thread until the message is read.
func check(call func() C.enum_clove_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	status := call()
	if status == C.CLOVE_STATUS_OK {
		return nil
	}
	return &Error{Status: int(status), Message: C.GoString(C.clove_last_error())}
}

// invalidArgument is the error for a value the C ABI cannot express, caught before any call.
func invalidArgument(format string, args ...any) error {
	return &Error{Status: C.CLOVE_STATUS_INVALID_ARGUMENT, Message: fmt.Sprintf(format, args...)}
}
