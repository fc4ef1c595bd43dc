package clove

// #include "clove.h"
import "C"

import (
	"context"
	"fmt"
	"time"
)

// Agent is an agent of a Runtime, known by its id; get one from Spawn or Runtime.Agent. Ids are
// never 0 and carry a generation, so the id of an agent the runtime has forgotten gives
// ErrNotFound rather than reaching another agent.
type Agent struct {
	ID uint64
	rt *Runtime
}

// Agent gives the agent with this id, e.g. one seen in List or in an Event.
func (rt *Runtime) Agent(id uint64) *Agent {
	return &Agent{ID: id, rt: rt}
}

// Exit is how an agent's process ended.
type Exit struct {
	// Code is the exit code when the process exited by itself, else -1. A sandboxed program
	// killed by signal s ends its sandbox with code 128+s, as shells report it.
	Code int
	// Signal is the signal that ended it, or 0.
	Signal int
	// OOMKilled says the kernel killed it for exceeding its memory limit.
	OOMKilled bool
}

// String describes the exit as "code 0", "signal 9" or "code 137, oom-killed".
func (e Exit) String() string {
	how := fmt.Sprintf("code %d", e.Code)
	if e.Code < 0 {
		how = fmt.Sprintf("signal %d", e.Signal)
	}
	if e.OOMKilled {
		how += ", oom-killed"
	}
	return how
}

func exitFromC(e C.clove_exit) Exit {
	exit := Exit{Code: -1, Signal: int(e.signal), OOMKilled: bool(e.oom_killed)}
	if e.has_code {
		exit.Code = int(e.code)
	}
	return exit
}

// Wait waits for the agent to end and tells how it ended; at once if it has already. It returns
// ctx.Err() when ctx ends first (the agent keeps running) and ErrClosed when the runtime closes.
func (a *Agent) Wait(ctx context.Context) (Exit, error) {
	var out C.clove_exit
	err := a.rt.poll(ctx, func(p *C.clove_runtime, timeoutMS C.int64_t) C.enum_clove_status {
		return C.clove_runtime_wait(p, C.uint64_t(a.ID), timeoutMS, &out)
	})
	if err != nil {
		return Exit{}, err
	}
	return exitFromC(out), nil
}

// Kill kills the agent and everything it started (SIGKILL to its process group).
func (a *Agent) Kill() error {
	return a.rt.call(func(p *C.clove_runtime) C.enum_clove_status { return C.clove_runtime_kill(p, C.uint64_t(a.ID)) })
}

// Pause stops the agent (its cgroup's freezer, else SIGSTOP to its process group) until Resume.
// Pausing a paused agent does nothing; pausing one that has ended gives ErrConflict.
func (a *Agent) Pause() error {
	return a.rt.call(func(p *C.clove_runtime) C.enum_clove_status { return C.clove_runtime_pause(p, C.uint64_t(a.ID)) })
}

// Resume continues a paused agent.
func (a *Agent) Resume() error {
	return a.rt.call(func(p *C.clove_runtime) C.enum_clove_status { return C.clove_runtime_resume(p, C.uint64_t(a.ID)) })
}

// Metrics are an agent's figures at one moment.
type Metrics struct {
	Uptime time.Duration
	// CPUTime is the CPU time of its main process.
	CPUTime  time.Duration
	RSSBytes uint64
	Threads  int
	FDs      int
	// Syscalls counts every request it made to the runtime, of any opcode.
	Syscalls uint64
	// Cgroup is nil for an agent without one (started without limits or sandbox).
	Cgroup *CgroupMetrics
}

// CgroupMetrics are the counters of an agent's cgroup.
type CgroupMetrics struct {
	CPUUsage      time.Duration
	CPUThrottled  time.Duration
	MemoryCurrent uint64
	MemoryPeak    uint64
	PIDs          uint64
	OOMKills      uint64
}

// Metrics reads the agent's figures.
func (a *Agent) Metrics() (Metrics, error) {
	var m C.clove_agent_metrics
	if err := a.rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_runtime_agent_metrics(p, C.uint64_t(a.ID), &m)
	}); err != nil {
		return Metrics{}, err
	}
	metrics := Metrics{
		Uptime:   time.Duration(m.uptime_ms) * time.Millisecond,
		CPUTime:  time.Duration(m.cpu_time_us) * time.Microsecond,
		RSSBytes: uint64(m.rss_bytes),
		Threads:  int(m.threads),
		FDs:      int(m.fds),
		Syscalls: uint64(m.syscalls),
	}
	if m.has_cgroup {
		metrics.Cgroup = &CgroupMetrics{
			CPUUsage:      time.Duration(m.cgroup_cpu_usage_us) * time.Microsecond,
			CPUThrottled:  time.Duration(m.cgroup_cpu_throttled_us) * time.Microsecond,
			MemoryCurrent: uint64(m.cgroup_memory_current),
			MemoryPeak:    uint64(m.cgroup_memory_peak),
			PIDs:          uint64(m.cgroup_pids_current),
			OOMKills:      uint64(m.cgroup_oom_kills),
		}
	}
	return metrics, nil
}

// AgentState is whether an agent runs, is paused or has ended.
type AgentState int

const (
	AgentRunning AgentState = C.CLOVE_AGENT_STATE_RUNNING
	AgentPaused  AgentState = C.CLOVE_AGENT_STATE_PAUSED
	AgentExited  AgentState = C.CLOVE_AGENT_STATE_EXITED
)

func (s AgentState) String() string {
	switch s {
	case AgentRunning:
		return "running"
	case AgentPaused:
		return "paused"
	case AgentExited:
		return "exited"
	}
	return fmt.Sprintf("AgentState(%d)", int(s))
}

// AgentInfo is one agent as List saw it.
type AgentInfo struct {
	ID uint64
	// Parent is the agent that spawned it, or 0 for one the host spawned or that connected.
	Parent uint64
	// PID is its process id (of its last run when it has ended); 0 for one that connected.
	PID    int
	State  AgentState
	Uptime time.Duration
	Name   string
	// Level is its permission level's name, or "custom" for custom permissions.
	Level string
	// Exit tells how it ended; nil while it has not.
	Exit *Exit
}

// List takes a snapshot of every agent the runtime knows, running or recently ended.
func (rt *Runtime) List() ([]AgentInfo, error) {
	var list *C.clove_agent_list
	if err := rt.call(func(p *C.clove_runtime) C.enum_clove_status { return C.clove_runtime_list(p, &list) }); err != nil {
		return nil, err
	}
	defer C.clove_agent_list_free(list)
	agents := make([]AgentInfo, C.clove_agent_list_len(list))
	for i := range agents {
		var info C.clove_agent_info
		if err := check(func() C.enum_clove_status { return C.clove_agent_list_get(list, C.size_t(i), &info) }); err != nil {
			return nil, err
		}
		agents[i] = AgentInfo{
			ID:     uint64(info.id),
			Parent: uint64(info.parent),
			PID:    int(info.pid),
			State:  AgentState(info.state),
			Uptime: time.Duration(info.uptime_ms) * time.Millisecond,
			// Copied: the strings belong to the list, freed on return.
			Name:  C.GoString(info.name),
			Level: C.GoString(info.level),
		}
		if info.has_exit {
			exit := exitFromC(info.exit)
			agents[i].Exit = &exit
		}
	}
	return agents, nil
}
