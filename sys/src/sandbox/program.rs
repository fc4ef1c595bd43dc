//! The steps [`super::spawn`] and [`super::enter`] share: the program's plan (prepared in the
//! parent), taking the sandbox ids, and, after the fork, becoming the unprivileged program in one
//! function ([`Program::become_program`]) while the forking process stays behind as a reaper that
//! forwards signals ([`reap`]).
//!
//! Everything that runs after a clone is async-signal-safe: raw system calls on memory the parent
//! prepared, no allocation, no lock (the C library's `setresuid` and `setgroups` would signal the
//! parent's other threads, which do not exist in the child, and wait for them forever).

use std::convert::Infallible;
use std::ffi::{c_char, CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use super::failure::{check, errno, Failure, Stage};
use super::{caps, invalid, landlock, pointer_array, seccomp, LandlockRules, Rlimit};
use crate::process::CHANNEL_FD;

/// What the program process needs, from a [`super::SandboxSpec`] or an [`super::EnterSpec`].
pub(super) struct Request<'a> {
    pub argv: &'a [CString],
    pub env: &'a [CString],
    pub cwd: &'a CString,
    pub uid: u32,
    pub gid: u32,
    pub rlimits: &'a [Rlimit],
    pub seccomp: bool,
    pub landlock: Option<&'a LandlockRules>,
    /// Whether the root has `/dev/pts`; `None` when unknown (entering a running sandbox): the rule
    /// is then added only if the path exists inside.
    pub dev_pts: Option<bool>,
    pub stdio: [RawFd; 3],
    pub channel: Option<RawFd>,
}

/// Everything the program process uses, owned by the parent's stack frame and so present in the
/// child's copy.
pub(super) struct Program<'a> {
    path: &'a CStr,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    cwd: &'a CStr,
    stdio: [RawFd; 3],
    channel: Option<RawFd>,
    rlimits: &'a [Rlimit],
    raw_rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    seccomp: Option<seccomp::Program>,
    landlock: Option<landlock::Prepared>,
    pub uid: u32,
    pub gid: u32,
    /// Whether this process may map arbitrary ids (and so clears supplementary groups).
    pub privileged: bool,
}

impl<'a> Program<'a> {
    /// Validates the request and prepares every string, array and program the child will use
    /// (the landlock ruleset too, so a kernel without landlock fails here, before any clone).
    pub fn new(request: Request<'a>) -> io::Result<Program<'a>> {
        let path = match request.argv.first() {
            Some(program) if program.as_bytes().starts_with(b"/") => program.as_c_str(),
            _ => return Err(invalid("argv[0] must be an absolute path inside the sandbox".into())),
        };
        if request.stdio.into_iter().chain(request.channel).any(|fd| fd < 0) {
            return Err(invalid("stdin, stdout, stderr and the channel must be open descriptors".into()));
        }
        if !request.cwd.as_bytes().starts_with(b"/") {
            return Err(invalid(format!("working directory {:?} is not absolute", request.cwd)));
        }
        let landlock = match request.landlock {
            Some(rules) => Some(landlock::Prepared::new(rules, request.dev_pts)?),
            None => None,
        };
        let raw_rlimits = request
            .rlimits
            .iter()
            .map(|r| (r.resource.raw(), libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard }))
            .collect();
        Ok(Program {
            path,
            argv: pointer_array(request.argv),
            envp: pointer_array(request.env),
            cwd: request.cwd.as_c_str(),
            stdio: request.stdio,
            channel: request.channel,
            rlimits: request.rlimits,
            raw_rlimits,
            seccomp: request.seccomp.then(seccomp::Program::deny_list),
            landlock,
            uid: request.uid,
            gid: request.gid,
            privileged: privileged(),
        })
    }

    pub fn seccomp(&self) -> bool {
        self.seccomp.is_some()
    }

    pub fn landlock(&self) -> Option<&landlock::Prepared> {
        self.landlock.as_ref()
    }

    /// Which landlock rule or rlimit a failure's index names.
    pub fn detail(&self, stage: Stage, index: usize) -> Option<String> {
        match stage {
            Stage::LandlockRule => self.landlock.as_ref().and_then(|l| l.rule_path(index)),
            Stage::Rlimit => self.rlimits.get(index).map(|r| format!("{:?}", r.resource)),
            _ => None,
        }
    }

    /// In the child, with the ids taken and the capabilities of the sandbox's user namespace still
    /// held: starts a session, sets rlimits, drops every capability, sets no_new_privs, enters
    /// landlock and seccomp, moves the descriptors into place, changes directory and execs.
    /// Returns only a failure.
    pub fn become_program(&self) -> Result<Infallible, Failure> {
        block_forwarded(libc::SIG_UNBLOCK)?;
        // SAFETY: setsid and setrlimit take integers and a pointer to a prepared rlimit.
        unsafe {
            check(libc::setsid().into(), Stage::Setsid, 0)?;
            for (i, (resource, limit)) in self.raw_rlimits.iter().enumerate() {
                check(libc::setrlimit(*resource, limit).into(), Stage::Rlimit, i)?;
            }
        }
        caps::drop_all()?;
        // SAFETY: prctl takes integers.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into(), Stage::NoNewPrivs, 0)?;
        if let Some(landlock) = &self.landlock {
            landlock.restrict_self()?;
        }
        if let Some(program) = &self.seccomp {
            program.install()?;
        }
        place_fds(self.stdio, self.channel)?;
        // SAFETY: cwd, the path and the arrays are NUL-terminated and live in this process's copy
        // of the parent's memory; execve returns only on failure.
        unsafe {
            check(libc::chdir(self.cwd.as_ptr()).into(), Stage::Chdir, 0)?;
            libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
        }
        Err(Failure::new(Stage::Execve, errno()))
    }
}

/// Puts stdin, stdout, stderr and the channel at 0..=3 and marks every other descriptor
/// close-on-exec (the error pipe must stay open until the exec itself).
pub(super) fn place_fds(stdio: [RawFd; 3], channel: Option<RawFd>) -> Result<(), Failure> {
    let [stdin, stdout, stderr] = stdio;
    let sources = [Some(stdin), Some(stdout), Some(stderr), channel];
    let mut copies = [-1; 4];
    // SAFETY: fcntl and dup2 on descriptors the parent keeps open until the call returns;
    // copying each source above CHANNEL_FD first means no dup2 overwrites a source another one
    // still needs.
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
        let first_closed = if channel.is_some() { CHANNEL_FD + 1 } else { CHANNEL_FD };
        check(
            libc::syscall(libc::SYS_close_range, first_closed as u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC),
            Stage::CloseRange,
            0,
        )?;
    }
    Ok(())
}

/// Whether this process may map arbitrary ids (and so need not deny setgroups).
pub(super) fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Clears supplementary groups (when the map allows it) and takes the sandbox ids. The process
/// keeps its capabilities in the user namespace (host root is unmapped there, so the kernel does
/// not clear them). Changing ids clears the parent death signal: arm it again afterwards.
pub(super) fn take_ids(uid: u32, gid: u32, privileged: bool) -> Result<(), Failure> {
    // Raw system calls: the C library's wrappers would signal the parent's other threads (which
    // do not exist here) to change their ids too, and wait for them forever.
    // SAFETY: setgroups with an empty list reads no memory; setresgid and setresuid take ids.
    unsafe {
        if privileged {
            check(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()), Stage::Setgroups, 0)?;
        }
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid), Stage::Setresgid, 0)?;
        check(libc::syscall(libc::SYS_setresuid, uid, uid, uid), Stage::Setresuid, 0)?;
    }
    Ok(())
}

/// Arms SIGKILL as the parent death signal (the parent is the thread that cloned us).
pub(super) fn arm_deathsig() -> Result<(), Failure> {
    // SAFETY: prctl takes integers.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    check(ret.into(), Stage::Deathsig, 0).map(drop)
}

/// Sets every signal's disposition to default and unblocks them all: the runtime's handlers must
/// not run in the child's copy of its memory, and ignored signals (SIGPIPE) would survive exec.
pub(super) fn reset_signals() -> Result<(), Failure> {
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

/// The signals the reaper forwards to the program.
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) the forwarded signals. Blocked before the
/// fork, so that signals for the program that arrive before the forwarder is installed stay pending.
pub(super) fn block_forwarded(how: libc::c_int) -> Result<(), Failure> {
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

/// The stack the program process runs on until its exec (see [`vfork`]): a few frames of system
/// calls.
pub(super) const PROGRAM_STACK: usize = 64 << 10;

/// Starts the program process, which runs `body` on `stack` in this process's memory
/// (`CLONE_VM | CLONE_VFORK`): nothing of the address space, a copy of the runtime's, is copied
/// again, and this process sleeps until the program has exec'd or exited. `body` must end in
/// `execve` or `_exit` and write nothing this process reads afterwards. With `pidfd`, a pidfd of the
/// program is stored there. Returns the program's pid.
pub(super) fn vfork<F: FnMut()>(
    stack: &mut [u8],
    pidfd: Option<&mut RawFd>,
    body: &mut F,
) -> Result<libc::pid_t, Failure> {
    extern "C" fn run<F: FnMut()>(body: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `body` is the `&mut F` passed to clone below, alive while the parent sleeps
        // (CLONE_VFORK) until this process execs or exits.
        let body = unsafe { &mut *body.cast::<F>() };
        body();
        // SAFETY: _exit has no preconditions; reached only if `body` broke its contract.
        unsafe { libc::_exit(127) }
    }
    // The stack grows down from its 16-byte aligned end.
    let top = stack.as_mut_ptr().wrapping_add(stack.len() & !15);
    let (flags, pidfd) = match pidfd {
        Some(fd) => (libc::CLONE_PIDFD, fd as *mut RawFd),
        None => (0, std::ptr::null_mut()),
    };
    // SAFETY: `run::<F>` gets `body`, which outlives the child's use of it (the parent sleeps until
    // the exec or exit); the child runs on `stack`, which nothing else uses, and makes only
    // async-signal-safe calls; with CLONE_PIDFD the kernel writes an int to `pidfd`, valid for it.
    let pid = unsafe {
        libc::clone(
            run::<F>,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | flags | libc::SIGCHLD,
            (body as *mut F).cast(),
            pidfd,
        )
    };
    check(pid.into(), Stage::Fork, 0).map(|pid| pid as libc::pid_t)
}

/// The program's pid, for the reaper's signal forwarder.
static PROGRAM: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = PROGRAM.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes integers.
        unsafe { libc::kill(pid, signal) };
    }
}

/// The reaper after the fork (a sandbox's init, or the helper of [`super::enter`]): hold nothing,
/// reap every child, exit with the program's status (a signal `s` as code `128 + s`).
pub(super) fn reap(program: libc::pid_t) -> ! {
    PROGRAM.store(program, Ordering::Relaxed);
    // SAFETY: close_range takes integers (closing the error pipe lets the parent see the exec);
    // sigaction installs `forward`, which only calls kill; waitpid writes `status` on this stack.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        // The reaper does nothing but wait: it needs no capability, and the program, which runs
        // with the same ids, must not reach into it through /proc or ptrace.
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
