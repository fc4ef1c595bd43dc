package clove_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"clove.dev/clove"
)

func TestErrorsMatchTheirSentinel(t *testing.T) {
	rt := newRuntime(t)
	ended := spawn(t, rt, clove.SpawnSpec{Name: "ended", Argv: []string{"true"}})
	wait(t, ended)
	spawnWith := func(spec clove.SpawnSpec) error {
		_, err := rt.Spawn(withDeadline(t), spec)
		return err
	}
	for _, tc := range []struct {
		what     string
		err      error
		sentinel error
		message  string // what libclove's message (or ours) names
	}{
		{"kill of an unknown id", rt.Agent(999999).Kill(), clove.ErrNotFound, "clove_runtime_kill"},
		{"resume of a stale id", rt.Agent(ended.ID + 1<<32).Resume(), clove.ErrNotFound, "clove_runtime_resume"},
		{"pause of an ended agent", ended.Pause(), clove.ErrConflict, "clove_runtime_pause"},
		{"a missing program", spawnWith(clove.SpawnSpec{Name: "missing", Argv: []string{"/nonexistent/agent"}}),
			clove.ErrNotFound, "/nonexistent/agent"},
		{"an empty argv", spawnWith(clove.SpawnSpec{Name: "empty"}), clove.ErrInvalidArgument, "clove_runtime_spawn"},
		{"an unknown level", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"}, Level: "root"}),
			clove.ErrInvalidArgument, "clove_spawn_options_set_level"},
		{"an unknown restart policy", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"},
			Restart: clove.Restart{Policy: "sometimes"}}), clove.ErrInvalidArgument, "sometimes"},
		{"an env name with '='", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"},
			Env: map[string]string{"A=B": "c"}}), clove.ErrInvalidArgument, "clove_spawn_options_set_env"},
		{"a relative mount", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"},
			Mounts: []clove.Mount{{Host: "relative", Guest: "/b"}}}), clove.ErrInvalidArgument, "absolute"},
		{"an unknown profile", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"}, Profile: "reckless"}),
			clove.ErrInvalidArgument, "reckless"},
		{"an unknown stdio", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"}, Stdio: 7}),
			clove.ErrInvalidArgument, "Stdio"},
		{"a NUL inside an argument", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"echo", "a\x00b"}}),
			clove.ErrInvalidArgument, "NUL"},
		{"a negative duration", spawnWith(clove.SpawnSpec{Name: "x", Argv: []string{"true"},
			Limits: clove.Limits{CPUQuota: -1}}), clove.ErrInvalidArgument, "CPUQuota"},
		{"a listen level that does not exist", rt.Listen(t.TempDir()+"/x.sock", "root", ""),
			clove.ErrInvalidArgument, "clove_runtime_listen"},
	} {
		var cerr *clove.Error
		switch {
		case !errors.Is(tc.err, tc.sentinel):
			t.Errorf("%s: got %v, want %v", tc.what, tc.err, tc.sentinel)
		case !errors.As(tc.err, &cerr):
			t.Errorf("%s: %v is not a *clove.Error", tc.what, tc.err)
		case !strings.Contains(cerr.Error(), tc.message):
			t.Errorf("%s: %q does not name %q", tc.what, cerr.Error(), tc.message)
		}
	}
}

func TestErrorsAreDistinct(t *testing.T) {
	err := &clove.Error{Status: 11, Message: "clove_runtime_pause: agent 1 has ended"}
	if !errors.Is(err, clove.ErrConflict) || errors.Is(err, clove.ErrNotFound) {
		t.Errorf("status 11 should match ErrConflict only")
	}
	future := &clove.Error{Status: 99}
	if errors.Unwrap(future) != nil || future.Error() != "clove: status 99" {
		t.Errorf("a status newer than the package: unwraps to %v, says %q", errors.Unwrap(future), future)
	}
}

// libclove keeps the last error per OS thread: each failing call must read its own message even
// while many goroutines fail at once.
func TestEachFailureCarriesItsOwnMessage(t *testing.T) {
	rt := newRuntime(t)
	var wg sync.WaitGroup
	mismatches := make(chan string, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				id := uint64(1_000_000 + g*1000 + i)
				err := rt.Agent(id).Kill()
				if want := fmt.Sprintf("agent %d not found", id); err == nil || !strings.Contains(err.Error(), want) {
					mismatches <- fmt.Sprintf("kill of %d: %v", id, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(mismatches)
	for m := range mismatches {
		t.Error(m)
	}
}
