//! The process sandbox: starts a program in fresh namespaces, in a minimal root, with every
//! privilege gone before its first instruction.
//!
//! [`spawn`] prepares everything in the parent (strings, pointer arrays, the mount plan, the seccomp
//! program, the landlock ruleset), then `clone3`s. From there on the child makes only
//! async-signal-safe system calls (no allocation, no lock) until `execve`:
//!
//! 1. **init** (PID 1 of the new pid namespace, host pid returned as [`Sandboxed::pid`]) arms
//!    `PR_SET_PDEATHSIG`, makes its mounts private, clones the trees to bind while it still has
//!    the caller's host ids and permissions, sets the hostname and brings up loopback, while the
//!    parent writes `uid_map`/`gid_map` and runs the caller's hook (which makes the cgroups).
//!    Released, init writes itself into the sandbox's cgroups and enters a cgroup namespace rooted
//!    there, takes the sandbox ids, builds the root on a tmpfs, `pivot_root`s into it and detaches
//!    the host's tree, adds the landlock rules, then starts the program (`CLONE_VM|CLONE_VFORK`).
//! 2. The **program** process (a low pid, not PID 1) starts a session, sets rlimits, drops every
//!    capability, sets no_new_privs, enters landlock and seccomp, moves its descriptors into place
//!    (closing the rest at exec), changes directory and execs.
//! 3. init closes every descriptor, drops its capabilities and reaps: it forwards SIGTERM, SIGINT,
//!    SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the program and exits with its status (a signal `s` as
//!    code `128 + s`); the kernel then kills whatever is left in the namespace.
//!
//! A failure in any step is reported to the parent as (stage, errno) and [`spawn`] fails naming it
//! ("pivot_root: EPERM"): no layer that was asked for is ever silently left out.
//!
//! [`enter`] runs another program inside a running sandbox (its namespaces, root, cgroups, ids,
//! landlock rules and seccomp filter) through a helper that `setns`es into init's namespaces and
//! forks the program, then reaps it like init does; see its module for the steps.

mod caps;
mod child;
pub(crate) mod direct;
mod enter;
mod failure;
mod landlock;
mod mounts;
mod netns;
mod program;
mod seccomp;

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::cvt;

pub use enter::{enter, EnterSpec, Entered};
pub use landlock::abi as landlock_abi;
pub use netns::NetNamespace;

/// The namespaces to create besides the user and mount namespaces, which every sandbox has (the
/// unprivileged setup and `pivot_root` need them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    /// A pid namespace: the program sees only its own processes; `/proc` is mounted for it.
    pub pid: bool,
    /// A network namespace with only loopback, up: a new one, or
    /// [`SandboxSpec::network_namespace`].
    pub net: bool,
    /// Its own hostname ([`SandboxSpec::hostname`]).
    pub uts: bool,
    /// Its own System V IPC objects and POSIX message queues.
    pub ipc: bool,
    /// A cgroup namespace rooted at the cgroup the hook put the sandbox in.
    pub cgroup: bool,
}

impl Namespaces {
    /// Every namespace.
    pub const ALL: Namespaces = Namespaces { pid: true, net: true, uts: true, ipc: true, cgroup: true };
}

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path (absolute). Binds are cloned with the spawning process's permissions.
    pub source: PathBuf,
    /// Path inside the sandbox (absolute, no `..`).
    pub target: PathBuf,
    /// Read-write; otherwise read-only. Both are nosuid and nodev, recursively.
    pub writable: bool,
}

impl Bind {
    /// `path` read-only at the same path inside.
    pub fn read_only(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind { source: path.clone(), target: path, writable: false }
    }

    /// `source` read-write at `target` inside. Writable inside only where the host ids the
    /// sandbox ids map to may write.
    pub fn writable(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind { source: source.into(), target: target.into(), writable: true }
    }
}

/// The sandbox's root file system, built on a read-only tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    /// Mounted in order; a later target may lie inside an earlier one.
    pub binds: Vec<Bind>,
    /// Size cap of the private `/tmp` tmpfs, in bytes.
    pub tmp_size: u64,
    /// Size cap of the `/dev/shm` tmpfs, in bytes.
    pub shm_size: u64,
    /// A private `/dev/pts` (and `/dev/ptmx`), for programs that open terminals.
    pub dev_pts: bool,
}

/// A resource limit set with `setrlimit` (lowering only: raising needs the host's privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    /// The limit in force; `u64::MAX` is unlimited.
    pub soft: u64,
    /// The ceiling the program may raise `soft` to.
    pub hard: u64,
}

/// The limits a sandbox may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    AddressSpace,
    Core,
    Cpu,
    FileSize,
    Memlock,
    OpenFiles,
    Processes,
    Stack,
}

impl Resource {
    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::Memlock => libc::RLIMIT_MEMLOCK,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::Processes => libc::RLIMIT_NPROC,
            Resource::Stack => libc::RLIMIT_STACK,
        }
    }
}

/// Landlock rules, naming paths inside the sandbox (after `pivot_root`). The sandbox's own mounts
/// are always allowed: `/proc` and `/dev` read, the device nodes, `/dev/shm`, `/dev/pts` and
/// `/tmp` read-write. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandlockRules {
    /// Readable and executable trees.
    pub read_exec: Vec<PathBuf>,
    /// Trees where everything is allowed (read, write, create, remove, rename, execute).
    pub read_write: Vec<PathBuf>,
}

/// What to run and how to confine it. Descriptors are borrowed: they must stay open until
/// [`spawn`] returns.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// `argv[0]` is the program's absolute path inside the sandbox (no `PATH` search).
    pub argv: Vec<CString>,
    /// `NAME=value` strings: the whole environment.
    pub env: Vec<CString>,
    pub namespaces: Namespaces,
    /// The ids the program runs as inside.
    pub uid: u32,
    pub gid: u32,
    /// The host ids they map to: an unprivileged id when the caller is root, else the caller's own.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Set when `namespaces.uts`.
    pub hostname: CString,
    pub root: RootFs,
    /// The working directory inside.
    pub cwd: CString,
    pub rlimits: Vec<Rlimit>,
    /// Install the deny-list seccomp filter.
    pub seccomp: bool,
    /// Restrict the file system with landlock; spawn fails when the kernel has no landlock.
    pub landlock: Option<LandlockRules>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Placed at [`crate::process::CHANNEL_FD`]; every other descriptor is closed at exec.
    pub channel: Option<RawFd>,
    /// Host paths of the files that put init in the sandbox's cgroups (`tasks` in each v1
    /// hierarchy, cgroup2's `cgroup.procs`): once released, init writes "0" into each, before its
    /// cgroup namespace and while it still has the caller's host ids; the program inherits them.
    pub join_cgroups: Vec<CString>,
    /// With `namespaces.net`: a [`NetNamespace`] made ahead to run in instead of a new one (the
    /// calling thread enters it around the clone). Borrowed like the other descriptors.
    pub network_namespace: Option<RawFd>,
    /// A cgroup2 directory, made before the spawn, that init is created in (`CLONE_INTO_CGROUP`)
    /// instead of joining one: no process moves, so nothing waits for the kernel's threadgroup lock,
    /// which a process moving itself on cgroup2 still takes. Borrowed like the other descriptors.
    pub start_in_cgroup: Option<RawFd>,
}

/// `CLONE_INTO_CGROUP` of clone3(2) (Linux 5.7), above the 32 bits the C library's constant has.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The clone3 flag and `cgroup` field that create the child in cgroup2 directory `dir`, if any.
fn into_cgroup(dir: Option<RawFd>) -> (u64, u64) {
    match dir {
        Some(dir) => (CLONE_INTO_CGROUP, dir as u64),
        None => (0, 0),
    }
}

/// Which layers a running sandbox has, for the agent's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub namespaces: Namespaces,
    pub seccomp: bool,
    /// The landlock ABI in force, `None` when the layer is off.
    pub landlock_abi: Option<u32>,
}

/// A started sandbox.
#[derive(Debug)]
pub struct Sandboxed {
    /// Host pid of the sandbox's init; its exit status is the program's.
    pub pid: u32,
    /// A pidfd of init: signal it with [`crate::process::pidfd_signal`] (SIGKILL ends the whole
    /// sandbox; SIGTERM and the like are forwarded to the program), wait with [`wait_nohang`].
    pub pidfd: OwnedFd,
    pub layers: Layers,
}

/// How a sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The program exited with this code, or was killed by signal `s` (code `128 + s`).
    Code(i32),
    /// Init itself was killed by this signal (for example a SIGKILL from the host).
    Signal(i32),
}

/// Starts `spec` in a new sandbox. `before_release` runs in the parent once init's ids are mapped,
/// while init does what needs neither the maps nor the cgroups: make the cgroups init joins through
/// [`SandboxSpec::join_cgroups`] there. Its error fails the spawn.
///
/// Like [`crate::process::start`], the sandbox is killed when the thread that called `spawn` exits
/// (`PR_SET_PDEATHSIG`), so call it from a thread that outlives its sandboxes. If that thread
/// cannot be taken back to its own network namespace after starting one in
/// [`SandboxSpec::network_namespace`] (the kernel is out of memory), the error says so and the
/// thread stays in the sandbox's.
pub fn spawn(spec: &SandboxSpec, before_release: impl FnOnce() -> io::Result<()>) -> io::Result<Sandboxed> {
    let mut plan = child::Plan::new(spec)?;
    // A socket, not a pipe: releasing an init that already died must fail with EPIPE, not raise
    // SIGPIPE in a host that never asked for it.
    let (sync_read, sync_write) = socket_pair()?;
    let (error_read, error_write) = pipe()?;
    let pipes = child::Pipes {
        sync_read: sync_read.as_raw_fd(),
        sync_write: sync_write.as_raw_fd(),
        error_read: error_read.as_raw_fd(),
        error_write: error_write.as_raw_fd(),
    };

    let mut pidfd: RawFd = -1;
    let (into_flag, cgroup) = into_cgroup(spec.start_in_cgroup);
    let args = CloneArgs {
        flags: plan.clone_flags() | libc::CLONE_PIDFD as u64 | into_flag,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    let home = match spec.network_namespace.filter(|_| spec.namespaces.net) {
        Some(ns) => Some(netns::ThreadNetwork::enter(ns)?),
        None => None,
    };
    // SAFETY: clone3 without CLONE_VM creates a copy of this process that continues on a copy of
    // this stack; `args` is valid for reads of its size and `pidfd` for a write of an int. The
    // child runs only `child::init`, which never returns, allocates nothing and takes no lock.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        child::init(&mut plan, &pipes);
    }
    let clone_error = io::Error::last_os_error();
    // The runtime's thread must not stay in the sandbox's network: its next children would be in it.
    let restored = home.map_or(Ok(()), netns::ThreadNetwork::restore);
    if pid < 0 {
        restored?;
        return Err(stage_error("clone3", clone_error));
    }
    // SAFETY: clone3 succeeded with CLONE_PIDFD, so the kernel stored a new pidfd we alone own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = pid as u32;
    drop(sync_read);
    drop(error_write);

    let released = restored
        .and_then(|()| map_ids(spec, pid))
        .and_then(|()| before_release().map_err(|e| stage_error("before_release", e)))
        .and_then(|()| send_release(&sync_write));
    if released.is_err() {
        // An init still waiting for the release ends quietly; one that failed has said why.
        drop(sync_write);
        let said = failure::read_failure(error_read.as_raw_fd(), |stage, index| plan.detail(stage, index));
        return Err(abandon(&pidfd, said.and(released).err()));
    }
    // `sync_write` stays open until init has exec'd the program: its end of file tells init that
    // the parent died.
    let started = failure::read_failure(error_read.as_raw_fd(), |stage, index| plan.detail(stage, index));
    drop(sync_write);
    match started {
        Ok(()) => Ok(Sandboxed { pid, pidfd, layers: plan.layers() }),
        Err(e) => Err(abandon(&pidfd, Some(e))),
    }
}

/// Kills and reaps a sandbox whose start failed; returns why it failed.
fn abandon(pidfd: &OwnedFd, why: Option<io::Error>) -> io::Error {
    // Ignoring a failed kill: init may already be gone, and the wait below reaps it either way.
    let _ = crate::process::pidfd_signal(pidfd, libc::SIGKILL);
    match wait(pidfd) {
        Ok(_) => why.unwrap_or_else(|| io::Error::other("sandbox init ended before its release")),
        Err(e) => e,
    }
}

/// The sandbox's exit, if it has ended (reaping it), or `None` while it runs.
pub fn wait_nohang(pidfd: &OwnedFd) -> io::Result<Option<Exit>> {
    Ok(crate::process::pidfd_wait(pidfd, false)?.map(Exit::from))
}

/// Waits for the sandbox to end and reaps it.
pub fn wait(pidfd: &OwnedFd) -> io::Result<Exit> {
    loop {
        if let Some(exit) = crate::process::pidfd_wait(pidfd, true)? {
            return Ok(exit.into());
        }
    }
}

impl From<crate::process::Exit> for Exit {
    fn from(exit: crate::process::Exit) -> Exit {
        match (exit.code, exit.signal) {
            (Some(code), _) => Exit::Code(code),
            (None, signal) => Exit::Signal(signal.unwrap_or(0)),
        }
    }
}

/// Writes the user namespace's id maps for `pid` (one id each way).
fn map_ids(spec: &SandboxSpec, pid: u32) -> io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if !program::privileged() {
        // Without CAP_SETGID outside, the kernel requires setgroups off before a gid map.
        std::fs::write(proc.join("setgroups"), "deny").map_err(|e| stage_error("setgroups deny", e))?;
    }
    std::fs::write(proc.join("uid_map"), format!("{} {} 1\n", spec.uid, spec.host_uid))
        .map_err(|e| stage_error("uid_map", e))?;
    std::fs::write(proc.join("gid_map"), format!("{} {} 1\n", spec.gid, spec.host_gid))
        .map_err(|e| stage_error("gid_map", e))
}

/// `err` with the stage that failed in front ("pivot_root: EPERM (...)"), keeping its kind.
fn stage_error(stage: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{stage}: {err}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is valid for writes of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is valid for writes of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair just returned these two fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Releases init: one byte on the sync socket.
fn send_release(sync: &OwnedFd) -> io::Result<()> {
    // SAFETY: sends one byte of a literal on a socket we own; MSG_NOSIGNAL turns a closed peer
    // into EPIPE instead of SIGPIPE.
    let sent = unsafe { libc::send(sync.as_raw_fd(), c"1".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
    match sent {
        1 => Ok(()),
        _ => Err(stage_error("release", io::Error::last_os_error())),
    }
}

/// `struct clone_args` of clone3(2), up to `cgroup` (version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The argv or envp array of execve: pointers into `strings`, then NULL.
fn pointer_array(strings: &[CString]) -> Vec<*const c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}
