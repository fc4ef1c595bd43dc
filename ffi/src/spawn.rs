//! What to start as an agent: options set one by one, then `clove_runtime_spawn`.

use std::ffi::c_char;

use clove_core::protocol::{RestartPolicy, RestartSpec, VmSpec};
use clove_core::runtime::{AgentStdio, Mount, Profile, SpawnSpec};

use crate::boundary::{clove_status, guard, out_arg, str_arg, Error};
use crate::handle::BoxHandle;
use crate::runtime::{clove_runtime, level_named};

/// Everything about an agent to start. Owned by the caller: free with `clove_spawn_options_free`.
/// Defaults: no argv (add the program first), level "standard", stdio inherited, no restart, no
/// limits, not sandboxed, no network.
pub struct clove_spawn_options {
    _private: [u8; 0],
}

impl BoxHandle for clove_spawn_options {
    type Rust = SpawnSpec;
}

/// Where an agent's stdout and stderr go.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clove_stdio {
    /// The host's own stdout and stderr.
    Inherit = 0,
    /// `/dev/null`.
    Null = 1,
    /// Appended to a file, both streams.
    File = 2,
}

/// Creates spawn options for an agent called `name`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_new(
    name: *const c_char,
    out: *mut *mut clove_spawn_options,
) -> clove_status {
    guard("clove_spawn_options_new", || {
        // SAFETY: the caller's contract on `name` and `out`.
        let (name, out) = unsafe { (str_arg(name, "name")?, out_arg(out, "out")?) };
        out.write(clove_spawn_options::into_handle(SpawnSpec::new(name, Vec::new())));
        Ok(())
    })
}

/// Frees spawn options; NULL does nothing. Agents spawned from them do not need them.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or came from `clove_spawn_options_new` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_free(opts: *mut clove_spawn_options) {
    guard("clove_spawn_options_free", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_spawn_options::free(opts) };
        Ok(())
    });
}

/// Appends to the agent's argv: the program first (looked up in `PATH`), then its arguments.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `arg` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_add_arg(
    opts: *mut clove_spawn_options,
    arg: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_add_arg", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        // SAFETY: the caller's contract on `arg`.
        s.argv.push(unsafe { str_arg(arg, "arg") }?.to_string());
        Ok(())
    })
}

/// Adds a variable to the agent's minimal environment (PATH, HOME, LANG, CLOVE_FD, CLOVE_AGENT_ID);
/// the host's own environment is never passed on.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `key` and `value` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_env(
    opts: *mut clove_spawn_options,
    key: *const c_char,
    value: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_set_env", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        // SAFETY: the caller's contract on `key` and `value`.
        let (key, value) = unsafe { (str_arg(key, "key")?, str_arg(value, "value")?) };
        if key.is_empty() || key.contains('=') {
            return Err(Error::invalid(format!("environment name {key:?} is empty or holds '='")));
        }
        s.env.push((key.to_string(), value.to_string()));
        Ok(())
    })
}

/// Sets the agent's working directory (default: the host's).
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `cwd` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_cwd(
    opts: *mut clove_spawn_options,
    cwd: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_set_cwd", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        // SAFETY: the caller's contract on `cwd`.
        s.cwd = Some(unsafe { str_arg(cwd, "cwd") }?.into());
        Ok(())
    })
}

/// Sets the agent's permission level by name: "unrestricted", "standard", "sandboxed", "readonly"
/// or "minimal" (any case). Another name gives `CLOVE_STATUS_INVALID_ARGUMENT`.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `level` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_level(
    opts: *mut clove_spawn_options,
    level: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_set_level", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        // SAFETY: the caller's contract on `level`.
        s.level = level_named(unsafe { str_arg(level, "level") }?)?;
        Ok(())
    })
}

/// Sends the agent's stdout and stderr to the host's (`CLOVE_STDIO_INHERIT`), to `/dev/null`
/// (`CLOVE_STDIO_NULL`) or, appended, to the file at `path` (`CLOVE_STDIO_FILE`). `path` is read
/// only for `CLOVE_STDIO_FILE`, and may be NULL otherwise.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `kind` is one of the `clove_stdio` values; `path` is NULL
/// or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_stdio(
    opts: *mut clove_spawn_options,
    kind: clove_stdio,
    path: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_set_stdio", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        s.stdio = match kind {
            clove_stdio::Inherit => AgentStdio::Inherit,
            clove_stdio::Null => AgentStdio::Null,
            // SAFETY: the caller's contract on `path`.
            clove_stdio::File => match unsafe { str_arg(path, "path") }? {
                "" => return Err(Error::invalid("`path` is empty: name the file the output goes to")),
                path => AgentStdio::File(path.into()),
            },
        };
        Ok(())
    })
}

/// Restarts the agent when it ends: `policy` is "never", "on-failure" (a non-zero code or a
/// signal) or "always". After `max_restarts` restarts within `window_s` seconds it is given up
/// (an ESCALATED event).
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `policy` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_restart(
    opts: *mut clove_spawn_options,
    policy: *const c_char,
    max_restarts: u32,
    window_s: u32,
) -> clove_status {
    guard("clove_spawn_options_set_restart", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        // SAFETY: the caller's contract on `policy`.
        let policy = match unsafe { str_arg(policy, "policy") }? {
            "never" => RestartPolicy::Never,
            "on-failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            other => {
                return Err(Error::invalid(format!("unknown restart policy {other:?} (never, on-failure or always)")))
            }
        };
        s.restart = RestartSpec { policy, max_restarts, window_s };
        Ok(())
    })
}

/// Sets resource limits; 0 leaves one unset. Stored now, enforced by the sandbox tier.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_limits(
    opts: *mut clove_spawn_options,
    memory_bytes: u64,
    max_pids: u32,
    cpu_quota_us: u64,
    cpu_period_us: u64,
) -> clove_status {
    guard("clove_spawn_options_set_limits", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        s.limits.memory = (memory_bytes != 0).then_some(memory_bytes);
        s.limits.max_pids = (max_pids != 0).then_some(max_pids);
        s.limits.cpu_quota = (cpu_quota_us != 0).then_some(cpu_quota_us);
        s.limits.cpu_period = (cpu_period_us != 0).then_some(cpu_period_us);
        Ok(())
    })
}

/// Asks for the agent to run in a sandbox (enforced by the sandbox tier).
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_sandboxed(
    opts: *mut clove_spawn_options,
    sandboxed: bool,
) -> clove_status {
    guard("clove_spawn_options_set_sandboxed", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        s.sandboxed = sandboxed;
        Ok(())
    })
}

/// Runs the agent in its own microVM with `vcpus` vCPUs (1 to 32) instead of a process sandbox; 0
/// turns that off. Its memory limit (`clove_spawn_options_set_memory`) is the VM's RAM, 256 MiB
/// when unset. Spawning fails with `CLOVE_STATUS_UNSUPPORTED` on a host that cannot boot a VM
/// (no /dev/kvm, or a software KVM such as kvm_pvm), with a last error saying why.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_vm(opts: *mut clove_spawn_options, vcpus: u32) -> clove_status {
    guard("clove_spawn_options_set_vm", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        s.vm = match vcpus {
            0 => None,
            1..=32 => Some(VmSpec { vcpus: vcpus as u8 }),
            _ => return Err(Error::invalid(format!("{vcpus} vCPUs: a VM has 1 to 32"))),
        };
        Ok(())
    })
}

/// Lets a sandboxed agent reach the network.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_network(
    opts: *mut clove_spawn_options,
    network: bool,
) -> clove_status {
    guard("clove_spawn_options_set_network", || {
        // SAFETY: the caller's contract on `opts`.
        let s = unsafe { clove_spawn_options::borrow_mut(opts, "opts") }?;
        s.network = network;
        Ok(())
    })
}

/// Applies a profile to sandboxed options: "permissive", "moderate" or "restrictive" (unknown →
/// `CLOVE_STATUS_INVALID_ARGUMENT`). It turns the sandbox on and fills the limits and network that
/// are not set yet, so set explicit limits first. See docs/security.md.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `profile` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_set_profile(
    opts: *mut clove_spawn_options,
    profile: *const c_char,
) -> clove_status {
    guard("clove_spawn_options_set_profile", || {
        // SAFETY: the caller's contract on `opts` and `profile`.
        let (s, name) = unsafe { (clove_spawn_options::borrow_mut(opts, "opts")?, str_arg(profile, "profile")?) };
        let profile = Profile::from_name(name)
            .ok_or_else(|| Error::invalid(format!("unknown profile '{name}' (permissive, moderate, restrictive)")))?;
        profile.apply(s)?;
        Ok(())
    })
}

/// Shows host path `host` inside a sandboxed agent at `guest` (both absolute), read-only or not.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live spawn options; `host` and `guest` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_spawn_options_add_mount(
    opts: *mut clove_spawn_options,
    host: *const c_char,
    guest: *const c_char,
    read_only: bool,
) -> clove_status {
    guard("clove_spawn_options_add_mount", || {
        // SAFETY: the caller's contract on `opts`, `host` and `guest`.
        let (s, host, guest) = unsafe {
            (clove_spawn_options::borrow_mut(opts, "opts")?, str_arg(host, "host")?, str_arg(guest, "guest")?)
        };
        if !host.starts_with('/') || !guest.starts_with('/') {
            return Err(Error::invalid(format!("mount {host} -> {guest}: both paths must be absolute")));
        }
        s.mounts.push(Mount { host: host.into(), guest: guest.into(), read_only });
        Ok(())
    })
}

/// Starts an agent and writes its id (never 0) to `out_id`. The options are copied and may be
/// freed or reused at once.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime; `opts` must not be
/// changed by another thread meanwhile.
///
/// # Safety
/// `rt` is NULL or a live runtime; `opts` is NULL or live spawn options; `out_id` is NULL or valid
/// for writing one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_spawn(
    rt: *mut clove_runtime,
    opts: *const clove_spawn_options,
    out_id: *mut u64,
) -> clove_status {
    guard("clove_runtime_spawn", || {
        // SAFETY: the caller's contract on `rt`, `opts` and `out_id`.
        let (rt, spec, out) = unsafe {
            (clove_runtime::borrow(rt, "rt")?, clove_spawn_options::borrow(opts, "opts")?, out_arg(out_id, "out_id")?)
        };
        out.write(rt.spawn(spec.clone())?.0);
        Ok(())
    })
}

/// Keeps `count` sandboxes shaped like `opts` (what they show, network, stdio and limits) ready, so
/// that spawning a sandboxed agent of that shape skips building one. Returns once they are ready;
/// each one handed out is replaced in the background. `opts` must be sandboxed.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `opts` is NULL or live spawn options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_prewarm(
    rt: *mut clove_runtime,
    opts: *const clove_spawn_options,
    count: usize,
) -> clove_status {
    guard("clove_runtime_prewarm", || {
        // SAFETY: the caller's contract on `rt` and `opts`.
        let (rt, spec) = unsafe { (clove_runtime::borrow(rt, "rt")?, clove_spawn_options::borrow(opts, "opts")?) };
        rt.prewarm(spec.clone(), count)?;
        Ok(())
    })
}
