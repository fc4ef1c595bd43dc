package clove_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"clove.dev/clove"
)

// lifecycle reads events of agent from events until its EXITED.
func lifecycle(t *testing.T, events <-chan clove.Event, agent *clove.Agent) []clove.Event {
	t.Helper()
	var seen []clove.Event
	timeout := time.After(deadline)
	for {
		select {
		case event, ok := <-events:
			if !ok {
				t.Fatalf("events ended after %+v", seen)
			}
			if event.AgentID != agent.ID {
				continue
			}
			seen = append(seen, event)
			if event.Kind == clove.EventExited {
				return seen
			}
		case <-timeout:
			t.Fatalf("no EXITED within %v; saw %+v", deadline, seen)
		}
	}
}

func checkLifecycle(t *testing.T, seen []clove.Event, code int) {
	t.Helper()
	if len(seen) != 2 || seen[0].Kind != clove.EventSpawned || seen[1].Kind != clove.EventExited {
		t.Fatalf("events %+v, want SPAWNED then EXITED", seen)
	}
	if seen[0].PID <= 0 || seen[1].Exit != (clove.Exit{Code: code}) {
		t.Errorf("SPAWNED has pid %d, EXITED has %+v; want a pid and code %d", seen[0].PID, seen[1].Exit, code)
	}
	if age := time.Since(seen[1].Time); age < 0 || age > time.Hour {
		t.Errorf("EXITED happened at %v, not just now", seen[1].Time)
	}
}

func TestEventsChannel(t *testing.T) {
	rt := newRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	events := rt.Events(ctx)
	agent := spawn(t, rt, clove.SpawnSpec{Name: "evented", Argv: []string{"/bin/sh", "-c", "exit 3"}})
	checkLifecycle(t, lifecycle(t, events, agent), 3)

	cancel()
	select {
	case _, ok := <-events:
		if ok {
			// At most one event was in flight; the next receive must see the channel closed.
			if _, ok := <-events; ok {
				t.Error("events still open after its context ended")
			}
		}
	case <-time.After(deadline):
		t.Error("events not closed after its context ended")
	}
}

func TestOnEventCallback(t *testing.T) {
	rt := newRuntime(t)
	// Buffered: the callback runs on the reactor thread and must never block.
	called := make(chan clove.Event, 64)
	if err := rt.OnEvent(func(e clove.Event) { called <- e }); err != nil {
		t.Fatalf("OnEvent: %v", err)
	}
	agent := spawn(t, rt, clove.SpawnSpec{Name: "called", Argv: []string{"/bin/sh", "-c", "exit 5"}})
	checkLifecycle(t, lifecycle(t, called, agent), 5)

	// Events are queued for NextEvent whether or not a callback is set.
	awaitEvent(t, rt, agent, clove.EventExited)

	if err := rt.OnEvent(nil); err != nil {
		t.Fatalf("OnEvent(nil): %v", err)
	}
	later := spawn(t, rt, clove.SpawnSpec{Name: "uncalled", Argv: []string{"true"}})
	wait(t, later)
	awaitEvent(t, rt, later, clove.EventExited)
	if len(called) != 0 {
		t.Errorf("a cleared callback was called with %+v", <-called)
	}
}

func TestOnEventReplacesTheCallback(t *testing.T) {
	rt := newRuntime(t)
	first, second := make(chan clove.Event, 64), make(chan clove.Event, 64)
	if err := rt.OnEvent(func(e clove.Event) { first <- e }); err != nil {
		t.Fatal(err)
	}
	if err := rt.OnEvent(func(e clove.Event) { second <- e }); err != nil {
		t.Fatal(err)
	}
	agent := spawn(t, rt, clove.SpawnSpec{Name: "replaced", Argv: []string{"true"}})
	checkLifecycle(t, lifecycle(t, second, agent), 0)
	if len(first) != 0 {
		t.Errorf("the replaced callback was called with %+v", <-first)
	}
}

func TestEventKindNames(t *testing.T) {
	names := map[clove.EventKind]string{
		clove.EventSpawned: "spawned", clove.EventExited: "exited", clove.EventPaused: "paused",
		clove.EventResumed: "resumed", clove.EventRestarting: "restarting", clove.EventEscalated: "escalated",
		clove.EventOOM: "oom", clove.EventCustom: "custom", clove.EventStateChanged: "state_changed",
		42: "EventKind(42)",
	}
	for kind, want := range names {
		if got := kind.String(); got != want {
			t.Errorf("EventKind %d is %q, want %q", int(kind), got, want)
		}
	}
}

func TestSubscribedBusEventsReachTheHost(t *testing.T) {
	requireRoot(t)
	rt := newRuntime(t)
	if err := rt.Subscribe("deploy_done"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Subscribe(""); !errors.Is(err, clove.ErrInvalidArgument) {
		t.Errorf("an empty type: %v, want ErrInvalidArgument", err)
	}
	agent := spawn(t, rt, pythonAgent(t, "emitter", `
from clove_sdk import CloveClient
with CloveClient() as c:
    c.emit_event("ignored", {})
    c.emit_event("deploy_done", {"v": 1})
`))
	event := awaitEvent(t, rt, agent, clove.EventCustom)
	if event.Name != "deploy_done" || event.Data != `{"v": 1}` {
		t.Errorf("got %q %q, want deploy_done {\"v\": 1}", event.Name, event.Data)
	}
	if exit := wait(t, agent); exit.Code != 0 {
		t.Errorf("the emitter exited %+v", exit)
	}
	if err := rt.Unsubscribe("deploy_done"); err != nil {
		t.Fatal(err)
	}
}
