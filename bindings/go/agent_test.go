package clove_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"clove.dev/clove"
)

func TestWaitReportsHowAnAgentEnded(t *testing.T) {
	rt := newRuntime(t)
	for _, tc := range []struct {
		script string
		want   clove.Exit
	}{
		{"exit 0", clove.Exit{Code: 0}},
		{"exit 42", clove.Exit{Code: 42}},
		{"kill -TERM $$", clove.Exit{Code: -1, Signal: 15}},
	} {
		agent := spawn(t, rt, clove.SpawnSpec{Name: "exiter", Argv: []string{"/bin/sh", "-c", tc.script}})
		if got := wait(t, agent); got != tc.want {
			t.Errorf("%q: Wait = %+v, want %+v", tc.script, got, tc.want)
		}
		// A second wait for an ended agent answers at once, the same.
		if got := wait(t, agent); got != tc.want {
			t.Errorf("%q: second Wait = %+v, want %+v", tc.script, got, tc.want)
		}
	}
}

func TestExitString(t *testing.T) {
	for _, tc := range []struct {
		exit clove.Exit
		want string
	}{
		{clove.Exit{Code: 0}, "code 0"},
		{clove.Exit{Code: -1, Signal: 9}, "signal 9"},
		{clove.Exit{Code: 137, OOMKilled: true}, "code 137, oom-killed"},
	} {
		if got := tc.exit.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.exit, got, tc.want)
		}
	}
}

func TestEnvDirAndStdioFile(t *testing.T) {
	t.Setenv("CLOVE_GO_HOST_ONLY", "leaked")
	rt := newRuntime(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "agent.log")
	agent := spawn(t, rt, clove.SpawnSpec{
		Name:      "env",
		Argv:      []string{"/bin/sh", "-c", `printf '%s|%s|%s' "$GREETING" "$PWD" "${CLOVE_GO_HOST_ONLY-unset}"`},
		Env:       map[string]string{"GREETING": "hello"},
		Dir:       dir,
		Stdio:     clove.StdioFile,
		StdioPath: log,
	})
	if exit := wait(t, agent); exit.Code != 0 {
		t.Fatalf("agent ended with %v", exit)
	}
	out, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// The host's own environment is never passed on.
	if want := "hello|" + dir + "|unset"; string(out) != want {
		t.Errorf("agent printed %q, want %q", out, want)
	}
}

func TestKill(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, sleeper("victim"))
	if err := agent.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if exit := wait(t, agent); exit != (clove.Exit{Code: -1, Signal: 9}) {
		t.Errorf("killed agent ended with %+v, want signal 9", exit)
	}
	if event := awaitEvent(t, rt, agent, clove.EventExited); event.Exit.Signal != 9 {
		t.Errorf("EXITED event has %+v, want signal 9", event.Exit)
	}
}

// awaitProcessState waits until the state letter of /proc/<pid>/stat (S sleeping, T stopped, ...)
// satisfies ok, as a signal takes effect a moment after it is sent, and returns the last one read.
func awaitProcessState(t *testing.T, pid int, ok func(state string) bool) string {
	t.Helper()
	var state string
	for stop := time.Now().Add(deadline); time.Now().Before(stop); time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			t.Fatal(err)
		}
		// The command name, in parentheses, may hold spaces: the state follows its closing one.
		state = strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))[0]
		if ok(state) {
			break
		}
	}
	return state
}

func TestPauseAndResume(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, sleeper("sleeper"))
	pid := awaitEvent(t, rt, agent, clove.EventSpawned).PID

	if err := agent.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	awaitEvent(t, rt, agent, clove.EventPaused)
	if state := find(t, rt, agent.ID).State; state != clove.AgentPaused {
		t.Errorf("List says %v after Pause", state)
	}
	if state := awaitProcessState(t, pid, func(s string) bool { return s == "T" }); state != "T" {
		t.Errorf("paused process is in state %s, want T (stopped)", state)
	}
	if err := agent.Pause(); err != nil {
		t.Errorf("pausing a paused agent gave %v, want nothing done", err)
	}

	if err := agent.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	awaitEvent(t, rt, agent, clove.EventResumed)
	if state := find(t, rt, agent.ID).State; state != clove.AgentRunning {
		t.Errorf("List says %v after Resume", state)
	}
	if state := awaitProcessState(t, pid, func(s string) bool { return s != "T" }); state == "T" {
		t.Errorf("resumed process is still stopped")
	}

	if err := agent.Kill(); err != nil {
		t.Fatal(err)
	}
	wait(t, agent)
	if err := agent.Pause(); !errors.Is(err, clove.ErrConflict) {
		t.Errorf("pausing an ended agent gave %v, want ErrConflict", err)
	}
}

func TestList(t *testing.T) {
	rt := newRuntime(t)
	spec := sleeper("listed")
	spec.Level = "readonly"
	agent := spawn(t, rt, spec)
	pid := awaitEvent(t, rt, agent, clove.EventSpawned).PID

	info := find(t, rt, agent.ID)
	want := clove.AgentInfo{ID: agent.ID, PID: pid, State: clove.AgentRunning, Name: "listed", Level: "readonly",
		Uptime: info.Uptime}
	if info != want {
		t.Errorf("List has %+v, want %+v", info, want)
	}

	if err := agent.Kill(); err != nil {
		t.Fatal(err)
	}
	wait(t, agent)
	info = find(t, rt, agent.ID)
	if info.State != clove.AgentExited || info.Exit == nil || info.Exit.Signal != 9 {
		t.Errorf("List has %+v (exit %v) for a killed agent", info, info.Exit)
	}
}

func TestMetricsOfAPlainAgent(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, sleeper("measured"))
	awaitEvent(t, rt, agent, clove.EventSpawned)
	m, err := agent.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if m.RSSBytes == 0 || m.Threads != 1 || m.Syscalls != 0 || m.Cgroup != nil {
		t.Errorf("Metrics = %+v, want RSS > 0, one thread, no requests, no cgroup", m)
	}
	if _, err := rt.Agent(agent.ID + 1<<32).Metrics(); !errors.Is(err, clove.ErrNotFound) {
		t.Errorf("Metrics of a stale id gave %v, want ErrNotFound", err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, sleeper("patient"))
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := agent.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline gave %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := agent.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Wait gave %v, want context.Canceled", err)
	}

	if state := find(t, rt, agent.ID).State; state != clove.AgentRunning {
		t.Errorf("the agent is %v after the waits gave up, want running", state)
	}
	if after := settledGoroutines(before); after > before {
		t.Errorf("%d goroutines before the waits, %d after", before, after)
	}
}

func TestRestartUntilEscalated(t *testing.T) {
	rt := newRuntime(t)
	agent := spawn(t, rt, clove.SpawnSpec{
		Name:    "flaky",
		Argv:    []string{"/bin/sh", "-c", "exit 3"},
		Restart: clove.Restart{Policy: "on-failure", MaxRestarts: 1, Window: time.Minute},
	})
	if event := awaitEvent(t, rt, agent, clove.EventRestarting); event.Attempt != 1 {
		t.Errorf("RESTARTING has attempt %d, want 1", event.Attempt)
	}
	awaitEvent(t, rt, agent, clove.EventEscalated)
}

func TestPrewarmWantsASandbox(t *testing.T) {
	rt := newRuntime(t)
	err := rt.Prewarm(withDeadline(t), sleeper("plain"), 1)
	if !errors.Is(err, clove.ErrInvalidArgument) {
		t.Errorf("Prewarm of a spec without sandbox gave %v, want ErrInvalidArgument", err)
	}
}
