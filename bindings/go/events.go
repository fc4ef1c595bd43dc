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
)

var eventNames = [...]string{
	EventSpawned:    "spawned",
	EventExited:     "exited",
	EventPaused:     "paused",
	EventResumed:    "resumed",
	EventRestarting: "restarting",
	EventEscalated:  "escalated",
	EventOOM:        "oom",
}

func (k EventKind) String() string {
	if k >= 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a lifecycle event. Fields that do not apply to its Kind are zero.
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
	return event
}

// NextEvent takes the oldest unread event, waiting for one until ctx ends (then it returns
// ctx.Err()) or the runtime closes (ErrClosed). Events are queued whether or not OnEvent is set;
// when the host falls behind, the oldest are dropped (WithEventCapacity). Each event goes to one
// caller only.
func (rt *Runtime) NextEvent(ctx context.Context) (Event, error) {
	var out C.clove_event
	err := rt.poll(ctx, func(p *C.clove_runtime, timeoutMS C.int64_t) C.enum_clove_status {
		return C.clove_runtime_next_event(p, timeoutMS, &out)
	})
	if err != nil {
		return Event{}, err
	}
	return eventFromC(&out), nil
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
