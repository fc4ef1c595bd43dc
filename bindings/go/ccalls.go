package clove

// #include <stdlib.h>
// #include "clove.h"
import "C"

import (
	"strings"
	"unsafe"
)

// cCalls is a run of C calls that stops at the first failure. It owns the C copies of the
// strings the calls borrow (libclove reads a string only during the call) until free.
type cCalls struct {
	strings []*C.char
	err     error
}

// str copies s to C memory. A NUL inside s would silently cut it short there, so it fails.
func (c *cCalls) str(s string) *C.char {
	if strings.IndexByte(s, 0) >= 0 {
		c.fail(invalidArgument("clove: %q holds a NUL byte", s))
		return nil
	}
	cs := C.CString(s)
	c.strings = append(c.strings, cs)
	return cs
}

// optionalStr is str, except that "" becomes NULL: the C ABI's "the default".
func (c *cCalls) optionalStr(s string) *C.char {
	if s == "" {
		return nil
	}
	return c.str(s)
}

// do makes the call unless an earlier one failed.
func (c *cCalls) do(call func() C.enum_clove_status) {
	if c.err == nil {
		c.err = check(call)
	}
}

// fail records err unless an earlier failure came first.
func (c *cCalls) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *cCalls) free() {
	for _, s := range c.strings {
		C.free(unsafe.Pointer(s))
	}
	c.strings = nil
}
