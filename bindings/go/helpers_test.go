package clove_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"clove.dev/clove"
)

// deadline bounds every wait of these tests; nothing asserts how long anything took.
const deadline = 30 * time.Second

func newRuntime(t *testing.T, opts ...clove.Option) *clove.Runtime {
	t.Helper()
	rt, err := clove.NewRuntime(opts...)
	if err != nil {
		t.Fatalf("NewRuntime: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// withDeadline is a context that ends with the test or after deadline.
func withDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// spawn starts an agent with its output sent to /dev/null unless spec says otherwise.
func spawn(t *testing.T, rt *clove.Runtime, spec clove.SpawnSpec) *clove.Agent {
	t.Helper()
	if spec.Stdio == clove.StdioInherit {
		spec.Stdio = clove.StdioNull
	}
	agent, err := rt.Spawn(withDeadline(t), spec)
	if err != nil {
		t.Fatalf("Spawn %s: %v", spec.Name, err)
	}
	return agent
}

func sleeper(name string) clove.SpawnSpec {
	return clove.SpawnSpec{Name: name, Argv: []string{"sleep", "30"}}
}

func wait(t *testing.T, agent *clove.Agent) clove.Exit {
	t.Helper()
	exit, err := agent.Wait(withDeadline(t))
	if err != nil {
		t.Fatalf("Wait for agent %d: %v", agent.ID, err)
	}
	return exit
}

// awaitEvent reads events until one of kind comes for agent.
func awaitEvent(t *testing.T, rt *clove.Runtime, agent *clove.Agent, kind clove.EventKind) clove.Event {
	t.Helper()
	ctx := withDeadline(t)
	for {
		event, err := rt.NextEvent(ctx)
		if err != nil {
			t.Fatalf("waiting for %v of agent %d: %v", kind, agent.ID, err)
		}
		if event.AgentID == agent.ID && event.Kind == kind {
			return event
		}
	}
}

// find lists the runtime's agents and returns the one with this id.
func find(t *testing.T, rt *clove.Runtime, id uint64) clove.AgentInfo {
	t.Helper()
	agents, err := rt.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, info := range agents {
		if info.ID == id {
			return info
		}
	}
	t.Fatalf("agent %d is not in List: %+v", id, agents)
	return clove.AgentInfo{}
}

// settledGoroutines waits until no more than want goroutines run, as goroutines that have
// finished their work take a moment to exit, and returns how many run.
func settledGoroutines(want int) int {
	stop := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want && time.Now().Before(stop) {
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// requireRoot skips, loudly, a test that needs sandboxes and cgroups.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root for sandboxes and cgroups")
	}
}

// pythonAgent is a sandboxed Python agent running script, with clove_sdk on its path.
func pythonAgent(t *testing.T, name, script string) clove.SpawnSpec {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	sdk, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	return clove.SpawnSpec{
		Name:      name,
		Argv:      []string{"/usr/bin/python3", path},
		Env:       map[string]string{"PYTHONPATH": sdk},
		Sandboxed: true,
	}
}
