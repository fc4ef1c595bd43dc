// Package clove runs AI agents as sandboxed OS processes from Go, through libclove's C ABI
// (include/clove.h).
//
// A Runtime starts Clove's reactor thread inside this process; Spawn starts agents, which are
// watched through Agent (Wait, Kill, Pause, Resume, Metrics), List, the event queue (NextEvent,
// Events) or an event callback (OnEvent). Close kills every agent and releases the runtime.
//
// Every failure is an *Error carrying the C status and libclove's message; compare it with the
// sentinel errors through errors.Is:
//
//	if err := agent.Pause(); errors.Is(err, clove.ErrConflict) { ... }
//
// The package links libclove.a statically. Point the linker at the directory holding it, e.g.
// CGO_LDFLAGS=-L$CARGO_TARGET_DIR/debug after `cargo build -p clove-ffi`; see docs/binding-go.md.
package clove

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -l:libclove.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "clove.h"
*/
import "C"

// ABIVersion is the ABI version of the linked library. NewRuntime refuses a library whose
// version differs from that of the header this package was built against.
func ABIVersion() int {
	return int(C.clove_abi_version())
}

// Version is the linked library's version, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.clove_version())
}
