//! What runs between clone3 and execve, and the plan it follows, prepared in the parent.
//!
//! Everything here after the clone is async-signal-safe: system calls on memory the parent
//! prepared, no allocation, no lock, no panic path. A failure is sent to the parent as a
//! [`Failure`] record on the error pipe, whose write end closes at exec.

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use super::{caps, invalid, landlock, mounts, pointer_array, seccomp, stage_error, Layers, SandboxSpec};
use crate::process::CHANNEL_FD;

/// The four pipe ends the child knows by number (all close-on-exec).
pub(super) struct Pipes {
    pub sync_read: RawFd,
    pub sync_write: RawFd,
    pub error_read: RawFd,
    pub error_write: RawFd,
}

/// Where the child failed, sent to the parent as three native-endian 32-bit words.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure {
    stage: Stage,
    /// Which mount step, tree, landlock rule or rlimit, for the stages that have several.
    index: u32,
    errno: i32,
}

/// Every step the child can fail in, numbered on the error pipe by its discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    Deathsig,
    CgroupNamespace,
    MakePrivate,
    OpenTree,
    SetMountAttributes,
    Setgroups,
    Setresgid,
    Setresuid,
    ParentGone,
    Hostname,
    Loopback,
    RootTmpfs,
    Mount,
    PivotRoot,
    DetachOldRoot,
    LandlockRule,
    Fork,
    Setsid,
    Rlimit,
    Capabilities,
    NoNewPrivs,
    LandlockRestrict,
    Seccomp,
    Signals,
    Stdio,
    CloseRange,
    Chdir,
    Execve,
}

const STAGES: [Stage; 28] = [
    Stage::Deathsig,
    Stage::CgroupNamespace,
    Stage::MakePrivate,
    Stage::OpenTree,
    Stage::SetMountAttributes,
    Stage::Setgroups,
    Stage::Setresgid,
    Stage::Setresuid,
    Stage::ParentGone,
    Stage::Hostname,
    Stage::Loopback,
    Stage::RootTmpfs,
    Stage::Mount,
    Stage::PivotRoot,
    Stage::DetachOldRoot,
    Stage::LandlockRule,
    Stage::Fork,
    Stage::Setsid,
    Stage::Rlimit,
    Stage::Capabilities,
    Stage::NoNewPrivs,
    Stage::LandlockRestrict,
    Stage::Seccomp,
    Stage::Signals,
    Stage::Stdio,
    Stage::CloseRange,
    Stage::Chdir,
    Stage::Execve,
];

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Deathsig => "parent death signal",
            Stage::CgroupNamespace => "cgroup namespace",
            Stage::MakePrivate => "make / private",
            Stage::OpenTree => "clone bind source",
            Stage::SetMountAttributes => "bind attributes",
            Stage::Setgroups => "setgroups",
            Stage::Setresgid => "setresgid",
            Stage::Setresuid => "setresuid",
            Stage::ParentGone => "parent exited during spawn",
            Stage::Hostname => "sethostname",
            Stage::Loopback => "loopback up",
            Stage::RootTmpfs => "root tmpfs",
            Stage::Mount => "mount",
            Stage::PivotRoot => "pivot_root",
            Stage::DetachOldRoot => "detach old root",
            Stage::LandlockRule => "landlock rule",
            Stage::Fork => "fork program",
            Stage::Setsid => "setsid",
            Stage::Rlimit => "setrlimit",
            Stage::Capabilities => "drop capabilities",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::LandlockRestrict => "landlock_restrict_self",
            Stage::Seccomp => "seccomp",
            Stage::Signals => "reset signals",
            Stage::Stdio => "dup2 stdio",
            Stage::CloseRange => "close_range",
            Stage::Chdir => "chdir",
            Stage::Execve => "execve",
        }
    }
}

/// `Ok` for a non-negative return, else the stage with errno.
pub(super) fn check(ret: libc::c_long, stage: Stage, index: usize) -> Result<libc::c_long, Failure> {
    if ret < 0 {
        Err(Failure { stage, index: index as u32, errno: errno() })
    } else {
        Ok(ret)
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, valid for reads.
    unsafe { *libc::__errno_location() }
}

/// Whether this process may map arbitrary ids (and so need not deny setgroups).
pub(super) fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Everything the child needs, owned by the parent's stack frame and so present in the child's copy.
pub(super) struct Plan<'a> {
    spec: &'a SandboxSpec,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    mounts: mounts::MountPlan,
    seccomp: Option<seccomp::Program>,
    landlock: Option<landlock::Prepared>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    privileged: bool,
}

impl<'a> Plan<'a> {
    /// Validates `spec` and prepares every string, array and program the child will use.
    pub fn new(spec: &'a SandboxSpec) -> io::Result<Plan<'a>> {
        match spec.argv.first() {
            Some(program) if program.as_bytes().starts_with(b"/") => {}
            _ => return Err(invalid("argv[0] must be an absolute path inside the sandbox".into())),
        }
        if [spec.stdin, spec.stdout, spec.stderr].into_iter().chain(spec.channel).any(|fd| fd < 0) {
            return Err(invalid("stdin, stdout, stderr and the channel must be open descriptors".into()));
        }
        if !spec.cwd.as_bytes().starts_with(b"/") {
            return Err(invalid(format!("working directory {:?} is not absolute", spec.cwd)));
        }
        let landlock = match &spec.landlock {
            Some(rules) => Some(landlock::Prepared::new(rules, &spec.root)?),
            None => None,
        };
        let rlimits = spec
            .rlimits
            .iter()
            .map(|r| (r.resource.raw(), libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard }))
            .collect();
        Ok(Plan {
            spec,
            argv: pointer_array(&spec.argv),
            envp: pointer_array(&spec.env),
            mounts: mounts::MountPlan::new(&spec.root, spec.namespaces.pid)?,
            seccomp: spec.seccomp.then(seccomp::Program::deny_list),
            landlock,
            rlimits,
            privileged: privileged(),
        })
    }

    pub fn clone_flags(&self) -> u64 {
        let ns = self.spec.namespaces;
        // The cgroup namespace is entered after the hook moved init, so that its root is the
        // sandbox's own cgroup rather than the runtime's.
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        for (on, flag) in [
            (ns.pid, libc::CLONE_NEWPID),
            (ns.net, libc::CLONE_NEWNET),
            (ns.uts, libc::CLONE_NEWUTS),
            (ns.ipc, libc::CLONE_NEWIPC),
        ] {
            if on {
                flags |= flag;
            }
        }
        flags as u64
    }

    pub fn layers(&self) -> Layers {
        Layers {
            namespaces: self.spec.namespaces,
            seccomp: self.seccomp.is_some(),
            landlock_abi: self.landlock.as_ref().map(|l| l.abi()),
        }
    }

    /// Reads the child's failure record: `Ok` on EOF (the program's execve closed the pipe).
    pub fn read_failure(&self, fd: RawFd) -> io::Result<()> {
        let mut record = [0u8; 12];
        let mut filled = 0;
        while filled < record.len() {
            let rest = &mut record[filled..];
            // SAFETY: `rest` is valid for writes of its length; fd is the open read end.
            let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
            match n {
                0 if filled == 0 => return Ok(()),
                0 => return Err(io::Error::other("sandbox: truncated failure record")),
                -1 if errno() == libc::EINTR => continue,
                -1 => return Err(stage_error("read failure pipe", io::Error::last_os_error())),
                n => filled += n as usize,
            }
        }
        let word = |i: usize| u32::from_ne_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
        let stage = STAGES.iter().copied().find(|s| *s as u32 == word(0));
        let Some(stage) = stage else {
            return Err(io::Error::other("sandbox: unknown failure stage"));
        };
        let index = word(4) as usize;
        let detail = match stage {
            Stage::OpenTree | Stage::SetMountAttributes => self.mounts.tree_source(index),
            Stage::Mount => self.mounts.step_target(index),
            Stage::LandlockRule => self.landlock.as_ref().and_then(|l| l.rule_path(index)),
            Stage::Rlimit => self.spec.rlimits.get(index).map(|r| format!("{:?}", r.resource)),
            _ => None,
        };
        let name = match detail {
            Some(detail) => format!("{} {detail}", stage.name()),
            None => stage.name().to_owned(),
        };
        Err(stage_error(&name, io::Error::from_raw_os_error(word(8) as i32)))
    }
}

/// The child of clone3: becomes the sandbox's init, or reports why it could not.
pub(super) fn init(plan: &mut Plan<'_>, pipes: &Pipes) -> ! {
    let failure = match setup(plan, pipes) {
        Ok(program) => reap(program),
        Err(failure) => failure,
    };
    report(pipes.error_write, failure)
}

fn report(fd: RawFd, failure: Failure) -> ! {
    let mut record = [0u8; 12];
    for (chunk, word) in record.chunks_exact_mut(4).zip([failure.stage as u32, failure.index, failure.errno as u32]) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // SAFETY: `record` is valid for reads of 12 bytes (atomic on a pipe); _exit never returns and
    // runs no destructor or atexit handler of the parent's copy.
    unsafe {
        libc::write(fd, record.as_ptr().cast(), record.len());
        libc::_exit(127)
    }
}

/// Init's part, up to forking the program; returns the program's pid.
fn setup(plan: &mut Plan<'_>, pipes: &Pipes) -> Result<libc::pid_t, Failure> {
    // SAFETY: prctl and close take integers; the closed fds are this process's copies of the
    // parent's ends, which the child must not hold (EOF on the sync pipe means the parent died).
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0).into(), Stage::Deathsig, 0)?;
        libc::close(pipes.sync_write);
        libc::close(pipes.error_read);
    }
    reset_signals()?;
    let mut byte = 0u8;
    // SAFETY: `byte` is valid for a one-byte write; sync_read is open.
    let n = unsafe { libc::read(pipes.sync_read, (&mut byte as *mut u8).cast(), 1) };
    if n != 1 {
        // The parent died or gave up before the release: nothing to report to.
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(1) }
    }
    let spec = plan.spec;
    if spec.namespaces.cgroup {
        // SAFETY: unshare takes flags only.
        check(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }.into(), Stage::CgroupNamespace, 0)?;
    }
    mounts::make_private()?;
    // With host uid 0 still ours, bind sources resolve with the spawner's permissions.
    plan.mounts.open_trees()?;
    take_ids(spec, plan.privileged)?;
    // Changing ids cleared the death signal: arm it again, then see whether the parent died meanwhile.
    // SAFETY: prctl takes integers; poll reads and writes one pollfd on this stack.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0).into(), Stage::Deathsig, 0)?;
        let mut pfd = libc::pollfd { fd: pipes.sync_read, events: 0, revents: 0 };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            return Err(Failure { stage: Stage::ParentGone, index: 0, errno: libc::ESRCH });
        }
        libc::close(pipes.sync_read);
    }
    if spec.namespaces.uts {
        let name = spec.hostname.as_bytes();
        // SAFETY: `name` is valid for reads of its length.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }.into(), Stage::Hostname, 0)?;
    }
    if spec.namespaces.net {
        loopback_up()?;
    }
    plan.mounts.build_root()?;
    if let Some(landlock) = &plan.landlock {
        landlock.add_rules()?;
    }
    // Signals for the program that arrive before init's forwarder is installed stay pending.
    block_forwarded(libc::SIG_BLOCK)?;
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child continues on a copy of this
    // stack and only runs `program`, which never returns.
    let pid = check(unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) }, Stage::Fork, 0)?;
    if pid == 0 {
        let Err(failure) = program(plan);
        report(pipes.error_write, failure);
    }
    Ok(pid as libc::pid_t)
}

/// Clears supplementary groups (when the map allows it) and takes the sandbox ids. Init keeps its
/// capabilities in the user namespace (host root is unmapped there, so the kernel does not clear
/// them) and can now create the mount points, which needs a mapped fsuid.
fn take_ids(spec: &SandboxSpec, privileged: bool) -> Result<(), Failure> {
    // Raw system calls: the C library's wrappers would signal the parent's other threads (which
    // do not exist here) to change their ids too, and wait for them forever.
    // SAFETY: setgroups with an empty list reads no memory; setresgid and setresuid take ids.
    unsafe {
        if privileged {
            check(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()), Stage::Setgroups, 0)?;
        }
        check(libc::syscall(libc::SYS_setresgid, spec.gid, spec.gid, spec.gid), Stage::Setresgid, 0)?;
        check(libc::syscall(libc::SYS_setresuid, spec.uid, spec.uid, spec.uid), Stage::Setresuid, 0)?;
    }
    Ok(())
}

fn loopback_up() -> Result<(), Failure> {
    // SAFETY: socket returns a new fd or -1.
    let sock = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }.into(),
        Stage::Loopback,
        0,
    )?;
    // SAFETY: an all-zero ifreq is a valid value of a plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write `req`, valid for both; `sock` is ours.
    let ret = unsafe {
        let mut ret = libc::ioctl(sock as RawFd, libc::SIOCGIFFLAGS, &mut req);
        if ret == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            ret = libc::ioctl(sock as RawFd, libc::SIOCSIFFLAGS, &req);
        }
        ret
    };
    let result = check(ret.into(), Stage::Loopback, 0);
    // SAFETY: closing the socket we opened above.
    unsafe { libc::close(sock as RawFd) };
    result.map(drop)
}

/// Sets every signal's disposition to default and unblocks them all: the runtime's handlers must
/// not run in the sandbox's copy of its memory, and ignored signals (SIGPIPE) would survive exec.
fn reset_signals() -> Result<(), Failure> {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask; sigaction fails harmlessly
    // (EINVAL) for SIGKILL, SIGSTOP and the C library's reserved signals. sigprocmask reads `set`.
    unsafe {
        let default: libc::sigaction = std::mem::zeroed();
        for signal in 1..libc::SIGRTMAX() {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check(libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()).into(), Stage::Signals, 0)?;
    }
    Ok(())
}

/// The program process: confine, then exec. Returns only a failure.
fn program(plan: &Plan<'_>) -> Result<std::convert::Infallible, Failure> {
    let spec = plan.spec;
    block_forwarded(libc::SIG_UNBLOCK)?;
    // SAFETY: setsid and setrlimit take integers and a pointer to a prepared rlimit.
    unsafe {
        check(libc::setsid().into(), Stage::Setsid, 0)?;
        for (i, (resource, limit)) in plan.rlimits.iter().enumerate() {
            check(libc::setrlimit(*resource, limit).into(), Stage::Rlimit, i)?;
        }
    }
    caps::drop_all()?;
    // SAFETY: prctl takes integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into(), Stage::NoNewPrivs, 0)?;
    if let Some(landlock) = &plan.landlock {
        landlock.restrict_self()?;
    }
    if let Some(program) = &plan.seccomp {
        program.install()?;
    }
    place_fds(spec)?;
    // SAFETY: cwd, argv[0] and the arrays are NUL-terminated and live in this process's copy of the
    // parent's memory; execve returns only on failure.
    unsafe {
        check(libc::chdir(spec.cwd.as_ptr()).into(), Stage::Chdir, 0)?;
        let path: &CStr = spec.argv.first().map_or(c"/", |p| p.as_c_str());
        libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
    }
    Err(Failure { stage: Stage::Execve, index: 0, errno: errno() })
}

/// Puts stdin, stdout, stderr and the channel at 0..=3 and marks every other descriptor
/// close-on-exec (the error pipe must stay open until the exec itself).
fn place_fds(spec: &SandboxSpec) -> Result<(), Failure> {
    let sources = [Some(spec.stdin), Some(spec.stdout), Some(spec.stderr), spec.channel];
    let mut copies = [-1; 4];
    // SAFETY: fcntl and dup2 on descriptors the parent keeps open until spawn returns; copying each
    // source above CHANNEL_FD first means no dup2 overwrites a source another one still needs.
    unsafe {
        for (copy, source) in copies.iter_mut().zip(sources) {
            if let Some(fd) = source {
                *copy = check(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, CHANNEL_FD + 1).into(), Stage::Stdio, 0)? as RawFd;
            }
        }
        for (target, copy) in copies.into_iter().enumerate() {
            if copy >= 0 {
                check(libc::dup2(copy, target as RawFd).into(), Stage::Stdio, target)?;
            }
        }
        let first_closed = if spec.channel.is_some() { CHANNEL_FD + 1 } else { CHANNEL_FD };
        check(
            libc::syscall(libc::SYS_close_range, first_closed as u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC),
            Stage::CloseRange,
            0,
        )?;
    }
    Ok(())
}

/// The signals init forwards to the program.
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) the forwarded signals.
fn block_forwarded(how: libc::c_int) -> Result<(), Failure> {
    // SAFETY: an all-zero sigset_t is valid storage that sigemptyset initialises; sigprocmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        check(libc::sigprocmask(how, &set, std::ptr::null_mut()).into(), Stage::Signals, 0).map(drop)
    }
}

/// The program's pid, for init's signal forwarder.
static PROGRAM: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = PROGRAM.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes integers.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Init after the fork: hold nothing, reap everything, exit with the program's status.
fn reap(program: libc::pid_t) -> ! {
    PROGRAM.store(program, Ordering::Relaxed);
    // SAFETY: close_range takes integers (closing the error pipe lets the parent see the exec);
    // sigaction installs `forward`, which only calls kill; waitpid writes `status` on this stack.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        // Init does nothing but wait: it needs no capability, and the program, which runs with
        // the same ids, must not reach into it through /proc or ptrace.
        caps::clear_sets();
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        for signal in FORWARDED {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
        // Whatever arrived since the fork is delivered now, to the forwarder.
        let _ = block_forwarded(libc::SIG_UNBLOCK);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == program {
                let code =
                    if libc::WIFSIGNALED(status) { 128 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) };
                libc::_exit(code);
            }
            if pid < 0 && errno() == libc::ECHILD {
                libc::_exit(127);
            }
        }
    }
}
