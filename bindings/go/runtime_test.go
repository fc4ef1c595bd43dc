package clove_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"clove.dev/clove"
)

func TestVersions(t *testing.T) {
	if clove.ABIVersion() != 1 {
		t.Errorf("ABIVersion = %d, want 1", clove.ABIVersion())
	}
	if !strings.Contains(clove.Version(), ".") {
		t.Errorf("Version = %q, want a version like 0.1.0", clove.Version())
	}
}

func TestEveryRuntimeOptionIsAccepted(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	rt := newRuntime(t,
		clove.WithHome(t.TempDir()),
		clove.WithMaxPayload(1<<20),
		clove.WithAuditCapacity(100),
		clove.WithEventCapacity(100),
		clove.WithExitedRetention(10),
		clove.WithAuditFile(audit),
	)
	wait(t, spawn(t, rt, clove.SpawnSpec{Name: "audited", Argv: []string{"true"}}))

	file, err := os.Open(audit)
	if err != nil {
		t.Fatalf("the audit file: %v", err)
	}
	defer file.Close()
	lines := bufio.NewScanner(file)
	if !lines.Scan() || !json.Valid(lines.Bytes()) {
		t.Errorf("the audit file's first line is not JSON: %q", lines.Text())
	}
	if info, err := file.Stat(); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the audit file has mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

func TestAStateFileIsKeptAndADamagedOneRefused(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.redb")
	rt := newRuntime(t, clove.WithStatePath(state))
	rt.Close()
	if info, err := os.Stat(state); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the state file: %v, %v; want mode 0600", info, err)
	}
	if err := os.WriteFile(state, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clove.NewRuntime(clove.WithStatePath(state)); !errors.Is(err, clove.ErrIO) || !strings.Contains(err.Error(), "state.redb") {
		t.Errorf("NewRuntime on a damaged state file: %v, want an IO error naming the file", err)
	}
}

func TestOptionsReachTheRuntime(t *testing.T) {
	// One queued event: SPAWNED is dropped when EXITED comes.
	rt := newRuntime(t, clove.WithEventCapacity(1), clove.WithExitedRetention(1))
	first := spawn(t, rt, clove.SpawnSpec{Name: "first", Argv: []string{"true"}})
	wait(t, first)
	event, err := rt.NextEvent(withDeadline(t))
	if err != nil || event.Kind != clove.EventExited || event.AgentID != first.ID {
		t.Errorf("with room for one event, NextEvent gave %+v (%v), want the EXITED of %d", event, err, first.ID)
	}

	// One ended agent remembered: the first is forgotten when the second ends.
	wait(t, spawn(t, rt, clove.SpawnSpec{Name: "second", Argv: []string{"true"}}))
	if _, err := first.Wait(withDeadline(t)); !errors.Is(err, clove.ErrNotFound) {
		t.Errorf("Wait for an agent past the retention gave %v, want ErrNotFound", err)
	}
}

func TestNegativeOptionIsRefused(t *testing.T) {
	for _, opt := range []clove.Option{
		clove.WithAuditCapacity(-1), clove.WithEventCapacity(-1), clove.WithExitedRetention(-1),
	} {
		if rt, err := clove.NewRuntime(opt); !errors.Is(err, clove.ErrInvalidArgument) {
			t.Errorf("NewRuntime with a negative count gave %v, want ErrInvalidArgument", err)
			if rt != nil {
				rt.Close()
			}
		}
	}
}

func TestAuditLog(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, clove.SpawnSpec{Name: "audited", Argv: []string{"/bin/sh", "-c", "exit 4"}})
	wait(t, agent)

	entries, err := rt.AuditLog(clove.AuditQuery{Category: "lifecycle", AgentID: agent.ID})
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	var exited *clove.AuditEntry
	for i, e := range entries {
		if e.Category != "lifecycle" || e.AgentID != agent.ID || e.AgentName != "audited" {
			t.Errorf("the query for agent %d's lifecycle gave %+v", agent.ID, e)
		}
		if e.Event == "EXITED" {
			exited = &entries[i]
		}
	}
	if exited == nil {
		t.Fatalf("no EXITED entry in %+v", entries)
	}
	// details_json arrives decoded; JSON numbers decode as float64.
	if code, _ := exited.Details["code"].(float64); code != 4 {
		t.Errorf("EXITED details %v, want code 4", exited.Details)
	}

	last := entries[len(entries)-1].ID
	if newer, err := rt.AuditLog(clove.AuditQuery{AgentID: agent.ID, SinceID: last}); err != nil || len(newer) != 0 {
		t.Errorf("entries since the last one: %+v (%v), want none", newer, err)
	}
}

// Listen serves an agent started elsewhere: here a Python client run by os/exec.
func TestListen(t *testing.T) {
	rt := newRuntime(t)
	socket := filepath.Join(t.TempDir(), "clove.sock")
	if err := rt.Listen(socket, "readonly", "secret"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if info, err := os.Stat(socket); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the socket: %v (mode %v), want mode 0600", err, info.Mode().Perm())
	}
	sdk, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	client := exec.Command("python3", "-c",
		"from clove_sdk import CloveClient\nwith CloveClient() as c: print(c.echo('over the socket'))")
	client.Env = append(os.Environ(), "PYTHONPATH="+sdk, "CLOVE_SOCKET="+socket)
	out, err := client.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "over the socket" {
		t.Errorf("the Python client said %q (%v)", out, err)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	rt, err := clove.NewRuntime()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	if err := rt.OnEvent(func(clove.Event) { calls.Add(1) }); err != nil {
		t.Fatal(err)
	}
	events := rt.Events(context.Background())
	agent := spawn(t, rt, sleeper("orphan"))
	spawned := <-events
	waited := make(chan error, 1)
	go func() {
		_, err := agent.Wait(context.Background())
		waited <- err
	}()

	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	callsAtClose := calls.Load()

	// Close waits for the goroutine of Events, which closes the channel.
	select {
	case event, ok := <-events:
		if ok {
			t.Errorf("Events delivered %+v after Close", event)
		}
	default:
		t.Error("the channel of Events is still open when Close returns")
	}
	// The pending Wait returns: with the exit of the killed agent if it saw it, else ErrClosed.
	select {
	case err := <-waited:
		if err != nil && !errors.Is(err, clove.ErrClosed) {
			t.Errorf("the pending Wait gave %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("the pending Wait did not return after Close")
	}
	// Close killed the agent.
	if err := syscall.Kill(spawned.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the agent's process %d is still there after Close (%v)", spawned.PID, err)
	}
	// Every call now says ErrClosed.
	if _, err := rt.Spawn(context.Background(), sleeper("late")); !errors.Is(err, clove.ErrClosed) {
		t.Errorf("Spawn after Close gave %v", err)
	}
	if _, err := rt.List(); !errors.Is(err, clove.ErrClosed) {
		t.Errorf("List after Close gave %v", err)
	}
	if err := rt.OnEvent(func(clove.Event) {}); !errors.Is(err, clove.ErrClosed) {
		t.Errorf("OnEvent after Close gave %v", err)
	}
	if _, ok := <-rt.Events(context.Background()); ok {
		t.Error("Events after Close delivered an event")
	}
	if err := rt.Close(); err != nil {
		t.Errorf("a second Close gave %v", err)
	}
	if after := settledGoroutines(before); after > before {
		t.Errorf("%d goroutines before the runtime, %d after Close", before, after)
	}
	if calls.Load() != callsAtClose {
		t.Errorf("the callback ran after Close")
	}
}

// The finalizer is a safety net: a Runtime nobody can reach any more is closed, its agents killed.
func TestFinalizerClosesAnUnreachableRuntime(t *testing.T) {
	pid := func() int {
		rt, err := clove.NewRuntime()
		if err != nil {
			t.Fatal(err)
		}
		spawn(t, rt, sleeper("forgotten"))
		event, err := rt.NextEvent(withDeadline(t))
		if err != nil || event.Kind != clove.EventSpawned {
			t.Fatalf("NextEvent gave %+v (%v), want SPAWNED", event, err)
		}
		return event.PID
	}()
	for stop := time.Now().Add(deadline); time.Now().Before(stop); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	t.Errorf("the agent %d of an unreachable runtime still runs", pid)
}
