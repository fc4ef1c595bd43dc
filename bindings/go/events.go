package clove

/*
#include <stdint.h>
#include "clove.h"

enum clove_status clove_go_set_event_callback(clove_runtime *rt, uintptr_t handle);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/cgo"
	"time"
)

// EventKind is what happened to an agent.
type EventKind int

const (
	// EventSpawned: its process started (again, after a restart); see Event.PID.
	EventSpawned EventKind = C.CLOVE_EVENT_KIND_SPAWNED
	// EventExited: its process ended, by itself or by a kill; see Event.Exit.
	EventExited  EventKind = C.CLOVE_EVENT_KIND_EXITED
	EventPaused  EventKind = C.CLOVE_EVENT_KIND_PAUSED
	EventResumed EventKind = C.CLOVE_EVENT_KIND_RESUMED
	// EventRestarting: it will be started again after Event.Delay, restart Event.Attempt.
	EventRestarting EventKind = C.CLOVE_EVENT_KIND_RESTARTING
	// EventEscalated: its restart budget is spent; it will not be started again.
	EventEscalated EventKind = C.CLOVE_EVENT_KIND_ESCALATED
	// EventOOM: the kernel killed one of its processes for exceeding its memory limit; an
	// EventExited follows.
	EventOOM EventKind = C.CLOVE_EVENT_KIND_OOM

	// The bus events come once subscribed to (Subscribe); Event.Data holds their JSON data.
	// EventMessageReceived: a message reached an agent's mailbox.
	EventMessageReceived EventKind = C.CLOVE_EVENT_KIND_MESSAGE_RECEIVED
	// EventStateChanged: a state store key changed.
	EventStateChanged EventKind = C.CLOVE_EVENT_KIND_STATE_CHANGED
	// EventSyscallBlocked: the policy refused one of the agent's requests.
	EventSyscallBlocked EventKind = C.CLOVE_EVENT_KIND_SYSCALL_BLOCKED
	// EventResourceWarning: an agent hit a limit (a full mailbox, ...).
	EventResourceWarning EventKind = C.CLOVE_EVENT_KIND_RESOURCE_WARNING
	// EventCustom: an agent emitted a custom event; Event.Name is its type.
	EventCustom EventKind = C.CLOVE_EVENT_KIND_CUSTOM
)

var eventNames = [...]string{
	EventSpawned:    "spawned",
	EventExited:     "exited",
	EventPaused:     "paused",
	EventResumed:    "resumed",
	EventRestarting: "restarting",
	EventEscalated:  "escalated",
	EventOOM:        "oom",

	EventMessageReceived: "message_received",
	EventStateChanged:    "state_changed",
	EventSyscallBlocked:  "syscall_blocked",
	EventResourceWarning: "resource_warning",
	EventCustom:          "custom",
}

func (k EventKind) String() string {
	if k >= 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a lifecycle event, or a bus event the host subscribed to. Fields that do not apply to
// its Kind are zero.
type Event struct {
	AgentID uint64
	Kind    EventKind
	// PID is the new process id, for EventSpawned.
	PID int
	// Exit is how the process ended, for EventExited.
	Exit Exit
	// Attempt is the restart's number within its window, for EventRestarting.
	Attempt int
	// Delay is how long until the restart, for EventRestarting.
	Delay time.Duration
	// Time is when it happened, to the millisecond.
	Time time.Time
	// Name is a bus event's type ("MESSAGE_RECEIVED"), or a custom event's own name.
	Name string
	// Data is a bus event's data, a JSON object.
	Data string
}

func eventFromC(e *C.clove_event) Event {
	event := Event{
		AgentID: uint64(e.agent_id),
		Kind:    EventKind(e.kind),
		PID:     int(e.pid),
		Attempt: int(e.attempt),
		Delay:   time.Duration(e.delay_ms) * time.Millisecond,
		Time:    time.UnixMilli(int64(e.timestamp_ms)),
	}
	if event.Kind == EventExited {
		event.Exit = exitFromC(e.exit)
	}
	if e.name != nil {
		event.Name = C.GoString(e.name)
	}
	if e.data_json != nil {
		event.Data = C.GoString(e.data_json)
	}
	return event
}

// Subscribe adds bus event types the host gets as events: "MESSAGE_RECEIVED",
// "STATE_CHANGED", "SYSCALL_BLOCKED", "RESOURCE_WARNING", "CUSTOM", a custom event's own name,
// or "*" for all. Lifecycle events always come.
func (rt *Runtime) Subscribe(types ...string) error {
	return rt.eachType(types, func(p *C.clove_runtime, t *C.char) C.enum_clove_status {
		return C.clove_runtime_subscribe(p, t)
	})
}

// Unsubscribe removes bus event types Subscribe added.
func (rt *Runtime) Unsubscribe(types ...string) error {
	return rt.eachType(types, func(p *C.clove_runtime, t *C.char) C.enum_clove_status {
		return C.clove_runtime_unsubscribe(p, t)
	})
}

func (rt *Runtime) eachType(types []string, fn func(*C.clove_runtime, *C.char) C.enum_clove_status) error {
	for _, t := range types {
		var c cCalls
		ct := c.str(t)
		if c.err == nil {
			c.err = rt.call(func(p *C.clove_runtime) C.enum_clove_status { return fn(p, ct) })
		}
		c.free()
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

// NextEvent takes the oldest unread event, waiting for one until ctx ends (then it returns
// ctx.Err()) or the runtime closes (ErrClosed). Events are queued whether or not OnEvent is set;
// when the host falls behind, the oldest are dropped (WithEventCapacity). Each event goes to one
// caller only.
func (rt *Runtime) NextEvent(ctx context.Context) (Event, error) {
	var event Event
	err := rt.poll(ctx, func(p *C.clove_runtime, timeoutMS C.int64_t) C.enum_clove_status {
		var out C.clove_event
		status := C.clove_runtime_next_event(p, timeoutMS, &out)
		if status == C.CLOVE_STATUS_OK {
			// A bus event's strings live until this thread's next call: copy them while the
			// goroutine is still locked to the thread.
			event = eventFromC(&out)
		}
		return status
	})
	if err != nil {
		return Event{}, err
	}
	return event, nil
}

// Events delivers events as NextEvent takes them, from a goroutine that stops, closing the
// channel, when ctx ends, the runtime closes or reading fails. An event taken just as ctx ends
// is dropped.
func (rt *Runtime) Events(ctx context.Context) <-chan Event {
	events := make(chan Event)
	// Under mu, so that the goroutine is counted before Close can wait for it.
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if rt.ptr == nil {
		close(events)
		return events
	}
	rt.readers.Add(1)
	go func() {
		defer rt.readers.Done()
		defer close(events)
		for {
			event, err := rt.NextEvent(ctx)
			if err != nil {
				return
			}
			select {
			case events <- event:
			case <-ctx.Done():
				return
			case <-rt.closed:
				return
			}
		}
	}()
	return events
}

// OnEvent sets fn to be called for every event, replacing any earlier function; nil clears it.
// Once OnEvent returns, the earlier function is not running and will not be called again.
//
// fn runs on the runtime's reactor thread, the thread that serves every agent: it must return
// quickly and must not call any method of this Runtime (that call would wait for the thread
// running fn, a deadlock). To act on an event, hand it to a goroutine, or use Events instead.
func (rt *Runtime) OnEvent(fn func(Event)) error {
	rt.callbackMu.Lock()
	defer rt.callbackMu.Unlock()
	var handle cgo.Handle
	if fn != nil {
		handle = cgo.NewHandle(fn)
	}
	err := rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_go_set_event_callback(p, C.uintptr_t(handle))
	})
	if err != nil {
		if handle != 0 {
			handle.Delete()
		}
		return err
	}
	if rt.callback != 0 {
		rt.callback.Delete()
	}
	rt.callback = handle
	return nil
}

// cloveDeliverEvent runs on the reactor thread, called by the C trampoline for every event.
//
//export cloveDeliverEvent
func cloveDeliverEvent(event *C.clove_event, handle C.uintptr_t) {
	fn := cgo.Handle(handle).Value().(func(Event))
	fn(eventFromC(event))
}
