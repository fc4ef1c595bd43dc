package clove

// #include "clove.h"
import "C"

import (
	"context"
	"math"
	"time"
)

// SpawnSpec is everything about an agent to start. Its zero value (plus Argv) is an agent at
// level "standard" with the host's stdio, no restart, no limits, no sandbox and no network.
type SpawnSpec struct {
	// Name names the agent in List and the audit log.
	Name string
	// Argv is the program, looked up in PATH, then its arguments. It must not be empty.
	Argv []string
	// Env adds variables to the agent's minimal environment (PATH, HOME, LANG, CLOVE_FD,
	// CLOVE_AGENT_ID); the host's own environment is never passed on.
	Env map[string]string
	// Dir is the agent's working directory; "" keeps the host's.
	Dir string
	// Level is the permission level: "unrestricted", "standard" (""), "sandboxed", "readonly"
	// or "minimal".
	Level string
	// Stdio says where the agent's stdout and stderr go; StdioPath names the file of StdioFile.
	Stdio     Stdio
	StdioPath string
	Restart   Restart
	Limits    Limits
	// Sandboxed runs the agent in the process sandbox: namespaces, a minimal root, cgroups,
	// seccomp (docs/security.md).
	Sandboxed bool
	// Network lets a sandboxed agent reach the network.
	Network bool
	// Profile, "permissive", "moderate" or "restrictive", turns the sandbox on and fills in
	// the limits and network this spec leaves unset; "" applies none.
	Profile string
	// Mounts show host paths inside a sandboxed agent.
	Mounts []Mount
	// VMCPUs, when not 0, runs the agent in its own microVM with that many vCPUs instead of a
	// process sandbox; Limits.MemoryBytes is its RAM (docs/microvm.md).
	VMCPUs uint32
}

// Stdio says where an agent's stdout and stderr go.
type Stdio int

const (
	StdioInherit Stdio = C.CLOVE_STDIO_INHERIT // the host's own stdout and stderr
	StdioNull    Stdio = C.CLOVE_STDIO_NULL    // /dev/null
	StdioFile    Stdio = C.CLOVE_STDIO_FILE    // appended to SpawnSpec.StdioPath, both streams
)

// Restart restarts an agent when it ends.
type Restart struct {
	// Policy is "never" (""), "on-failure" (a non-zero code or a signal) or "always".
	Policy string
	// After MaxRestarts restarts within Window (whole seconds), the agent is given up: an
	// EventEscalated. Both are passed as they are; Clove's agent SDK uses 5 in 300 s.
	MaxRestarts uint32
	Window      time.Duration
}

// Limits are an agent's resource limits, enforced through its cgroup; 0 leaves one unset.
type Limits struct {
	MemoryBytes uint64
	MaxPIDs     uint32
	// CPUQuota of CPU time per CPUPeriod, in whole microseconds.
	CPUQuota  time.Duration
	CPUPeriod time.Duration
}

// Mount shows host path Host inside a sandboxed agent at Guest; both are absolute.
type Mount struct {
	Host     string
	Guest    string
	ReadOnly bool
}

// Spawn starts an agent. ctx is checked before it starts; a spawn under way is not interrupted.
func (rt *Runtime) Spawn(ctx context.Context, spec SpawnSpec) (*Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts, err := newSpawnOptions(spec)
	if err != nil {
		return nil, err
	}
	defer C.clove_spawn_options_free(opts)
	var id C.uint64_t
	if err := rt.call(func(p *C.clove_runtime) C.enum_clove_status { return C.clove_runtime_spawn(p, opts, &id) }); err != nil {
		return nil, err
	}
	return &Agent{ID: uint64(id), rt: rt}, nil
}

// Prewarm keeps count sandboxes shaped like spec (what they show, network, stdio and limits)
// ready, so that spawning a sandboxed agent of that shape skips building one. It returns once they
// are ready; each one handed out is replaced in the background. spec must be sandboxed. ctx is
// checked before it starts.
func (rt *Runtime) Prewarm(ctx context.Context, spec SpawnSpec, count int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if count < 0 {
		return invalidArgument("clove: Prewarm: negative count %d", count)
	}
	opts, err := newSpawnOptions(spec)
	if err != nil {
		return err
	}
	defer C.clove_spawn_options_free(opts)
	return rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_runtime_prewarm(p, opts, C.size_t(count))
	})
}

// newSpawnOptions translates spec into C spawn options, which the caller frees.
func newSpawnOptions(spec SpawnSpec) (*C.clove_spawn_options, error) {
	var c cCalls
	defer c.free()
	var opts *C.clove_spawn_options
	name := c.str(spec.Name)
	c.do(func() C.enum_clove_status { return C.clove_spawn_options_new(name, &opts) })
	for _, arg := range spec.Argv {
		arg := c.str(arg)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_add_arg(opts, arg) })
	}
	for key, value := range spec.Env {
		key, value := c.str(key), c.str(value)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_env(opts, key, value) })
	}
	if spec.Dir != "" {
		dir := c.str(spec.Dir)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_cwd(opts, dir) })
	}
	if spec.Level != "" {
		level := c.str(spec.Level)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_level(opts, level) })
	}
	if spec.Stdio < StdioInherit || spec.Stdio > StdioFile {
		// libclove takes the value as a C enum: one outside it must not get that far.
		c.fail(invalidArgument("clove: unknown Stdio %d", spec.Stdio))
	}
	path := c.optionalStr(spec.StdioPath)
	c.do(func() C.enum_clove_status {
		return C.clove_spawn_options_set_stdio(opts, C.enum_clove_stdio(spec.Stdio), path)
	})
	if spec.Restart.Policy != "" {
		policy := c.str(spec.Restart.Policy)
		window := c.whole("Restart.Window", spec.Restart.Window, time.Second, math.MaxUint32)
		c.do(func() C.enum_clove_status {
			return C.clove_spawn_options_set_restart(opts, policy, C.uint32_t(spec.Restart.MaxRestarts), C.uint32_t(window))
		})
	}
	if spec.Limits != (Limits{}) {
		l := spec.Limits
		quota := c.whole("Limits.CPUQuota", l.CPUQuota, time.Microsecond, math.MaxUint64)
		period := c.whole("Limits.CPUPeriod", l.CPUPeriod, time.Microsecond, math.MaxUint64)
		c.do(func() C.enum_clove_status {
			return C.clove_spawn_options_set_limits(opts, C.uint64_t(l.MemoryBytes), C.uint32_t(l.MaxPIDs),
				C.uint64_t(quota), C.uint64_t(period))
		})
	}
	// Only what is asked for is set: a profile fills in what is still unset.
	if spec.Sandboxed {
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_sandboxed(opts, true) })
	}
	if spec.Network {
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_network(opts, true) })
	}
	if spec.VMCPUs != 0 {
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_vm(opts, C.uint32_t(spec.VMCPUs)) })
	}
	for _, m := range spec.Mounts {
		host, guest, readOnly := c.str(m.Host), c.str(m.Guest), C.bool(m.ReadOnly)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_add_mount(opts, host, guest, readOnly) })
	}
	// Last, so that the explicit limits, network and working directory above win over it.
	if spec.Profile != "" {
		profile := c.str(spec.Profile)
		c.do(func() C.enum_clove_status { return C.clove_spawn_options_set_profile(opts, profile) })
	}
	if c.err != nil {
		C.clove_spawn_options_free(opts)
		return nil, c.err
	}
	return opts, nil
}

// whole converts d to a count of unit for the C ABI, refusing what the field cannot hold.
func (c *cCalls) whole(field string, d, unit time.Duration, max uint64) uint64 {
	n := d / unit
	if d < 0 || uint64(n) > max {
		c.fail(invalidArgument("clove: %s %v is out of range", field, d))
	}
	return uint64(n)
}
