package clove_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"clove.dev/clove"
)

// A sandboxed Python agent talks to the runtime through clove_sdk and cannot see the host's files.
func TestSandboxedPythonAgent(t *testing.T) {
	requireRoot(t)
	rt := newRuntime(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host only"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := pythonAgent(t, "echoer", `
import os, sys
from clove_sdk import CloveClient
if os.path.exists(os.environ["SECRET"]):
    sys.exit(3)
with CloveClient() as client:
    sys.exit(0 if client.echo("hello from go") == "hello from go" else 4)
`)
	spec.Env["SECRET"] = secret
	agent := spawn(t, rt, spec)
	if exit := wait(t, agent); exit.Code != 0 {
		t.Errorf("the sandboxed agent ended with %v (3: it saw the host's file; 4: a wrong echo)", exit)
	}
}

// An agent over its memory limit is OOM-killed, and the host hears OOM, then EXITED.
func TestMemoryLimitOOMKillsTheAgent(t *testing.T) {
	requireRoot(t)
	rt := newRuntime(t)
	spec := pythonAgent(t, "hog", `
chunks = []
while True:
    chunks.append(b"x" * (10 << 20))
`)
	spec.Limits = clove.Limits{MemoryBytes: 50 << 20}
	agent := spawn(t, rt, spec)

	awaitEvent(t, rt, agent, clove.EventOOM)
	if event := awaitEvent(t, rt, agent, clove.EventExited); !event.Exit.OOMKilled {
		t.Errorf("EXITED after OOM has %v, want oom-killed", event.Exit)
	}
	if exit := wait(t, agent); !exit.OOMKilled {
		t.Errorf("Wait gave %v, want oom-killed", exit)
	}
}

func TestSandboxedAgentHasACgroup(t *testing.T) {
	requireRoot(t)
	rt := newRuntime(t)
	spec := sleeper("limited")
	spec.Sandboxed = true
	spec.Limits = clove.Limits{MemoryBytes: 64 << 20, MaxPIDs: 16}
	agent := spawn(t, rt, spec)
	awaitEvent(t, rt, agent, clove.EventSpawned)
	m, err := agent.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if m.Cgroup == nil || m.Cgroup.MemoryCurrent == 0 || m.Cgroup.PIDs == 0 {
		t.Errorf("Metrics of a limited sandbox: %+v (cgroup %+v), want memory and pids counted", m, m.Cgroup)
	}
}

func TestPrewarmedSandbox(t *testing.T) {
	requireRoot(t)
	rt := newRuntime(t)
	spec := clove.SpawnSpec{Name: "warm", Argv: []string{"/bin/true"}, Profile: "moderate", Stdio: clove.StdioNull}
	if err := rt.Prewarm(withDeadline(t), spec, 1); err != nil {
		t.Fatalf("Prewarm: %v", err)
	}
	if exit := wait(t, spawn(t, rt, spec)); exit.Code != 0 {
		t.Errorf("the agent of a warm sandbox ended with %v", exit)
	}
	if err := rt.Prewarm(withDeadline(t), spec, -1); !errors.Is(err, clove.ErrInvalidArgument) {
		t.Errorf("Prewarm of -1 sandboxes gave %v, want ErrInvalidArgument", err)
	}
}
