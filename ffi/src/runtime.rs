//! The runtime handle: its options, its creation and destruction, and the calls that command one
//! agent by id.

use std::ffi::c_char;
use std::time::Duration;

use clove_core::policy::Level;
use clove_core::runtime::{AgentId, ListenConfig, Runtime, RuntimeConfig};

use crate::agents::clove_exit;
use crate::boundary::{clove_status, guard, opt_str_arg, out_arg, str_arg, Error, Result};
use crate::handle::BoxHandle;

// Every function on a `clove_runtime` may run on any thread at once: the Rust value must be both.
const _: fn() = || {
    fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<Runtime>();
};

/// Options for `clove_runtime_new`, set one by one so that new options never break old callers.
/// Owned by the caller: free with `clove_runtime_options_free`.
pub struct clove_runtime_options {
    _private: [u8; 0],
}

impl BoxHandle for clove_runtime_options {
    type Rust = RuntimeConfig;
}

/// A running runtime: one reactor thread that owns every agent. Owned by the caller: free with
/// `clove_runtime_free`.
pub struct clove_runtime {
    _private: [u8; 0],
}

impl BoxHandle for clove_runtime {
    type Rust = Runtime;
}

/// Creates options holding the defaults: max payload 1 MiB, home `$HOME` (else `/root`), 10 000
/// audit entries, 1 024 queued events, 256 ended agents remembered.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `out` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_new(out: *mut *mut clove_runtime_options) -> clove_status {
    guard("clove_runtime_options_new", || {
        // SAFETY: the caller's contract on `out`.
        let out = unsafe { out_arg(out, "out") }?;
        out.write(clove_runtime_options::into_handle(RuntimeConfig::default()));
        Ok(())
    })
}

/// Frees options; NULL does nothing. A runtime created from them does not need them.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or came from `clove_runtime_options_new` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_free(opts: *mut clove_runtime_options) {
    guard("clove_runtime_options_free", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::free(opts) };
        Ok(())
    });
}

/// Sets the directory that `~` stands for in path policies.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options; `home` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_home(
    opts: *mut clove_runtime_options,
    home: *const c_char,
) -> clove_status {
    guard("clove_runtime_options_set_home", || {
        // SAFETY: the caller's contract on `opts` and `home`.
        let (c, home) = unsafe { (clove_runtime_options::borrow_mut(opts, "opts")?, str_arg(home, "home")?) };
        c.home = home.to_string();
        Ok(())
    })
}

/// Sets the largest frame payload accepted from an agent, in bytes.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_max_payload(
    opts: *mut clove_runtime_options,
    max_payload: u32,
) -> clove_status {
    guard("clove_runtime_options_set_max_payload", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::borrow_mut(opts, "opts") }?.max_payload = max_payload;
        Ok(())
    })
}

/// Sets how many audit entries are kept in memory.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_audit_capacity(
    opts: *mut clove_runtime_options,
    capacity: usize,
) -> clove_status {
    guard("clove_runtime_options_set_audit_capacity", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::borrow_mut(opts, "opts") }?.audit_capacity = capacity;
        Ok(())
    })
}

/// Sets how many events `clove_runtime_next_event` can fall behind before the oldest is dropped.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_event_capacity(
    opts: *mut clove_runtime_options,
    capacity: usize,
) -> clove_status {
    guard("clove_runtime_options_set_event_capacity", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::borrow_mut(opts, "opts") }?.event_capacity = capacity;
        Ok(())
    })
}

/// Sets how many ended agents are remembered for `clove_runtime_wait` and `clove_runtime_list`.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_exited_retention(
    opts: *mut clove_runtime_options,
    retention: usize,
) -> clove_status {
    guard("clove_runtime_options_set_exited_retention", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::borrow_mut(opts, "opts") }?.exited_retention = retention;
        Ok(())
    })
}

/// Also appends every audit entry to the file at `path` as a JSON line (created with mode 0600);
/// NULL stops that (the default).
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_audit_file(
    opts: *mut clove_runtime_options,
    path: *const c_char,
) -> clove_status {
    guard("clove_runtime_options_set_audit_file", || {
        // SAFETY: the caller's contract on `opts` and `path`.
        let (c, path) = unsafe { (clove_runtime_options::borrow_mut(opts, "opts")?, opt_str_arg(path, "path")?) };
        c.audit_file = path.map(Into::into);
        Ok(())
    })
}

/// Keeps the state store's global keys in the database file at `path` (created with mode 0600), so
/// they outlive the runtime: each STORE or DELETE of one is answered once committed to disk. NULL
/// keeps the store in memory (the default). `clove_runtime_new` fails with `CLOVE_STATUS_IO` and a
/// last error naming the file when it is damaged or another runtime has it open.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_state_path(
    opts: *mut clove_runtime_options,
    path: *const c_char,
) -> clove_status {
    guard("clove_runtime_options_set_state_path", || {
        // SAFETY: the caller's contract on `opts` and `path`.
        let (c, path) = unsafe { (clove_runtime_options::borrow_mut(opts, "opts")?, opt_str_arg(path, "path")?) };
        c.state_path = path.map(Into::into);
        Ok(())
    })
}

/// The guest kernel and initramfs that microVM agents boot (`guest/kernel/build.sh` and
/// `guest/initramfs.sh` build them). NULL keeps what `CLOVE_VM_KERNEL` and `CLOVE_VM_INITRAMFS`
/// said when the options were made. Checked when a VM agent is spawned, not here.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options; `kernel` and `initramfs` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_vm_image(
    opts: *mut clove_runtime_options,
    kernel: *const c_char,
    initramfs: *const c_char,
) -> clove_status {
    guard("clove_runtime_options_set_vm_image", || {
        // SAFETY: the caller's contract on `opts`, `kernel` and `initramfs`.
        let (c, kernel, initramfs) = unsafe {
            (
                clove_runtime_options::borrow_mut(opts, "opts")?,
                opt_str_arg(kernel, "kernel")?,
                opt_str_arg(initramfs, "initramfs")?,
            )
        };
        if let Some(kernel) = kernel {
            c.vm.kernel = Some(kernel.into());
        }
        if let Some(initramfs) = initramfs {
            c.vm.initramfs = Some(initramfs.into());
        }
        Ok(())
    })
}

/// Starts a runtime: its reactor thread runs until `clove_runtime_free`. `opts` may be NULL for the
/// defaults; the runtime copies what it needs, so `opts` may be freed at once.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or live options; `out` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_new(
    opts: *const clove_runtime_options,
    out: *mut *mut clove_runtime,
) -> clove_status {
    guard("clove_runtime_new", || {
        // SAFETY: the caller's contract on `out`.
        let out = unsafe { out_arg(out, "out") }?;
        let config = if opts.is_null() {
            RuntimeConfig::default()
        } else {
            // SAFETY: the caller's contract on `opts`, which is not NULL here.
            unsafe { clove_runtime_options::borrow(opts, "opts") }?.clone()
        };
        out.write(clove_runtime::into_handle(Runtime::start(config)?));
        Ok(())
    })
}

/// Kills every agent, removes the listening socket, joins the reactor thread and frees the
/// runtime; NULL does nothing. After it returns, the event callback is not called again.
///
/// Thread-safety: any thread but the reactor's (never from the event callback), and only once no
/// other call on this runtime is running or will start.
///
/// # Safety
/// `rt` is NULL or came from `clove_runtime_new` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_free(rt: *mut clove_runtime) {
    guard("clove_runtime_free", || {
        // SAFETY: the caller's contract on `rt`.
        unsafe { clove_runtime::free(rt) };
        Ok(())
    });
}

/// Serves agents started elsewhere on a Unix socket at `path` (mode 0600). They start at, and can
/// never rise above, `max_level` (NULL: "standard"). Peers with this process's uid are admitted;
/// others must present `token` (NULL: no token, so they are refused).
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; each string is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_listen(
    rt: *mut clove_runtime,
    path: *const c_char,
    max_level: *const c_char,
    token: *const c_char,
) -> clove_status {
    guard("clove_runtime_listen", || {
        // SAFETY: the caller's contract on `rt` and on each string.
        let (rt, path, max_level, token) = unsafe {
            (
                clove_runtime::borrow(rt, "rt")?,
                str_arg(path, "path")?,
                opt_str_arg(max_level, "max_level")?,
                opt_str_arg(token, "token")?,
            )
        };
        let mut config = ListenConfig::new(path);
        if let Some(name) = max_level {
            config.max_level = level_named(name)?;
        }
        config.token = token.map(str::to_string);
        Ok(rt.listen(config)?)
    })
}

pub(crate) fn level_named(name: &str) -> Result<Level> {
    Level::from_name(name).ok_or_else(|| {
        Error::invalid(format!("unknown level {name:?} (unrestricted, standard, sandboxed, readonly or minimal)"))
    })
}

/// Runs `command` on the runtime behind `rt`.
///
/// # Safety
/// `rt` is NULL or a live runtime.
unsafe fn command(
    function: &str,
    rt: *mut clove_runtime,
    command: impl FnOnce(&Runtime) -> Result<()>,
) -> clove_status {
    guard(function, || {
        // SAFETY: forwarded from this function's contract.
        command(unsafe { clove_runtime::borrow(rt, "rt") }?)
    })
}

/// Kills an agent and everything it started (SIGKILL to its process group). An id the runtime
/// does not know gives `CLOVE_STATUS_NOT_FOUND`.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_kill(rt: *mut clove_runtime, id: u64) -> clove_status {
    // SAFETY: the caller's contract on `rt`.
    unsafe { command("clove_runtime_kill", rt, |rt| Ok(rt.kill(AgentId(id))?)) }
}

/// Stops an agent's process group (SIGSTOP) until `clove_runtime_resume`.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_pause(rt: *mut clove_runtime, id: u64) -> clove_status {
    // SAFETY: the caller's contract on `rt`.
    unsafe { command("clove_runtime_pause", rt, |rt| Ok(rt.pause(AgentId(id))?)) }
}

/// Continues a paused agent.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_resume(rt: *mut clove_runtime, id: u64) -> clove_status {
    // SAFETY: the caller's contract on `rt`.
    unsafe { command("clove_runtime_resume", rt, |rt| Ok(rt.resume(AgentId(id))?)) }
}

/// Waits for an agent to end and writes how it ended to `out`. `timeout_ms` < 0 waits forever;
/// `CLOVE_STATUS_TIMEOUT` means it is still running.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime (several threads may
/// wait for the same agent).
///
/// # Safety
/// `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_exit`.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_wait(
    rt: *mut clove_runtime,
    id: u64,
    timeout_ms: i64,
    out: *mut clove_exit,
) -> clove_status {
    guard("clove_runtime_wait", || {
        // SAFETY: the caller's contract on `rt` and `out`.
        let (rt, out) = unsafe { (clove_runtime::borrow(rt, "rt")?, out_arg(out, "out")?) };
        let exit = rt.wait(AgentId(id), timeout(timeout_ms))?;
        out.write(exit.into());
        Ok(())
    })
}

/// A C timeout: negative means forever.
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}
