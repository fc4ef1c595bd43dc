package clove

// #include "clove.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
)

// Runtime is a running Clove runtime: one reactor thread, owned by this process, that owns every
// agent. Its methods may be called from any goroutine. Close it when done; a finalizer closes a
// Runtime that became unreachable, but only as a safety net.
type Runtime struct {
	// mu is held shared by every C call on ptr and exclusively by Close, which frees ptr:
	// clove_runtime_free must be the last call on a runtime.
	mu  sync.RWMutex
	ptr *C.clove_runtime

	closeOnce sync.Once
	closed    chan struct{}  // closed when Close begins, so that waits and event readers stop
	readers   sync.WaitGroup // the goroutines of Events, which Close waits for

	callbackMu sync.Mutex
	callback   cgo.Handle // the function given to OnEvent; 0 when none

	thinkMu sync.Mutex
	think   cgo.Handle // the function given to OnThink; 0 when none
}

// An Option configures NewRuntime.
type Option func(*runtimeOptions)

type runtimeOptions struct {
	cCalls
	c *C.clove_runtime_options
}

// WithHome sets the directory that "~" stands for in path policies (default: $HOME, else /root).
func WithHome(dir string) Option {
	return func(o *runtimeOptions) {
		home := o.str(dir)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_home(o.c, home) })
	}
}

// WithMaxPayload sets the largest frame payload accepted from an agent (default 1 MiB).
func WithMaxPayload(bytes uint32) Option {
	return func(o *runtimeOptions) {
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_max_payload(o.c, C.uint32_t(bytes)) })
	}
}

// WithAuditCapacity sets how many audit entries are kept in memory (default 10 000).
func WithAuditCapacity(entries int) Option {
	return func(o *runtimeOptions) {
		n := o.size("WithAuditCapacity", entries)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_audit_capacity(o.c, n) })
	}
}

// WithEventCapacity sets how many events NextEvent and Events can fall behind before the oldest
// is dropped (default 1 024).
func WithEventCapacity(events int) Option {
	return func(o *runtimeOptions) {
		n := o.size("WithEventCapacity", events)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_event_capacity(o.c, n) })
	}
}

// WithExitedRetention sets how many ended agents are remembered for Wait and List (default 256).
func WithExitedRetention(agents int) Option {
	return func(o *runtimeOptions) {
		n := o.size("WithExitedRetention", agents)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_exited_retention(o.c, n) })
	}
}

// WithAuditFile also appends every audit entry to the file at path as a JSON line (created with
// mode 0600). "" writes no file, the default.
func WithAuditFile(path string) Option {
	return func(o *runtimeOptions) {
		file := o.optionalStr(path)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_audit_file(o.c, file) })
	}
}

// WithStatePath keeps the agents' state store (its global keys) in the database file at path,
// across runs (created with mode 0600). "" keeps it in memory, the default. NewRuntime fails with
// an IO error if the file is damaged or another runtime has it open.
func WithStatePath(path string) Option {
	return func(o *runtimeOptions) {
		file := o.optionalStr(path)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_state_path(o.c, file) })
	}
}

// WithVMImage names the guest kernel and initramfs that microVM agents boot; "" keeps what
// CLOVE_VM_KERNEL and CLOVE_VM_INITRAMFS said (docs/microvm.md).
func WithVMImage(kernel, initramfs string) Option {
	return func(o *runtimeOptions) {
		k, i := o.optionalStr(kernel), o.optionalStr(initramfs)
		o.do(func() C.enum_clove_status { return C.clove_runtime_options_set_vm_image(o.c, k, i) })
	}
}

// size converts a count for a size_t setter; a negative one would wrap around.
func (o *runtimeOptions) size(option string, n int) C.size_t {
	if n < 0 {
		o.fail(invalidArgument("clove: %s(%d): the count is negative", option, n))
	}
	return C.size_t(n)
}

// NewRuntime starts a runtime: its reactor thread runs until Close.
func NewRuntime(opts ...Option) (*Runtime, error) {
	if abi := C.clove_abi_version(); abi != C.CLOVE_ABI_VERSION {
		return nil, &Error{Status: C.CLOVE_STATUS_UNSUPPORTED, Message: fmt.Sprintf(
			"clove: the linked libclove has ABI version %d, this package was built for %d", abi, C.CLOVE_ABI_VERSION)}
	}
	var copts *C.clove_runtime_options
	if err := check(func() C.enum_clove_status { return C.clove_runtime_options_new(&copts) }); err != nil {
		return nil, err
	}
	defer C.clove_runtime_options_free(copts)
	o := runtimeOptions{c: copts}
	defer o.free()
	for _, opt := range opts {
		opt(&o)
	}
	var ptr *C.clove_runtime
	o.do(func() C.enum_clove_status { return C.clove_runtime_new(o.c, &ptr) })
	if o.err != nil {
		return nil, o.err
	}
	rt := &Runtime{ptr: ptr, closed: make(chan struct{})}
	runtime.SetFinalizer(rt, (*Runtime).Close)
	return rt, nil
}

// Close kills every agent, removes the listening socket, stops the reactor thread and frees the
// runtime. When it returns, the OnEvent callback will not run again and every channel from
// Events is closed; later calls return ErrClosed. Closing twice does nothing. Close must not be
// called from the OnEvent callback.
func (rt *Runtime) Close() error {
	rt.closeOnce.Do(func() {
		runtime.SetFinalizer(rt, nil)
		close(rt.closed)
		rt.mu.Lock()
		C.clove_runtime_free(rt.ptr)
		rt.ptr = nil
		rt.mu.Unlock()
		// clove_runtime_free cleared the callback the way OnEvent(nil) does.
		rt.callbackMu.Lock()
		if rt.callback != 0 {
			rt.callback.Delete()
			rt.callback = 0
		}
		rt.callbackMu.Unlock()
		// And the think handler, once the calls in flight returned.
		rt.thinkMu.Lock()
		if rt.think != 0 {
			rt.think.Delete()
			rt.think = 0
		}
		rt.thinkMu.Unlock()
		rt.readers.Wait()
	})
	return nil
}

// call makes one C call on the live runtime, holding Close off until it returns.
func (rt *Runtime) call(fn func(*C.clove_runtime) C.enum_clove_status) error {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if rt.ptr == nil {
		return ErrClosed
	}
	err := check(func() C.enum_clove_status { return fn(rt.ptr) })
	runtime.KeepAlive(rt)
	return err
}

// pollSlice bounds each blocking C call of Wait and NextEvent, so that they notice ctx and
// Close this quickly without leaving a goroutine blocked in C.
const pollSlice = 50 * time.Millisecond

// poll repeats a blocking call, given how many milliseconds it may wait, until it returns
// anything but ErrTimeout, ctx ends or the runtime closes.
func (rt *Runtime) poll(ctx context.Context, fn func(p *C.clove_runtime, timeoutMS C.int64_t) C.enum_clove_status) error {
	for {
		slice := pollSlice
		if deadline, ok := ctx.Deadline(); ok {
			if left := time.Until(deadline); left < slice {
				slice = left
			}
		}
		// Rounded up, so that the last bit of a deadline is slept through rather than spun on.
		ms := (slice + time.Millisecond - 1) / time.Millisecond
		if ms < 0 {
			ms = 0
		}
		err := rt.call(func(p *C.clove_runtime) C.enum_clove_status { return fn(p, C.int64_t(ms)) })
		if !errors.Is(err, ErrTimeout) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-rt.closed:
			return ErrClosed
		default:
		}
	}
}

// Listen serves agents started elsewhere on a Unix socket at path (mode 0600). They start at,
// and can never rise above, maxLevel ("": "standard"). Peers with this process's uid are
// admitted; others must present token ("": none, so they are refused).
func (rt *Runtime) Listen(path, maxLevel, token string) error {
	var c cCalls
	defer c.free()
	cpath, clevel, ctoken := c.str(path), c.optionalStr(maxLevel), c.optionalStr(token)
	if c.err != nil {
		return c.err
	}
	return rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_runtime_listen(p, cpath, clevel, ctoken)
	})
}
