//! Child processes: the setup that runs between fork and exec, pidfds and signals.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::cvt;
pub use crate::sandbox::direct::{start, DirectSpec, Started};

/// The descriptor number at which an agent finds its channel to the runtime (`CLOVE_FD`).
pub const CHANNEL_FD: RawFd = 3;

/// Prepares `cmd` to start an EXEC's program: it gets its own process group (so a kill reaches
/// everything it started), dies with SIGKILL when the runtime's thread that started it goes away,
/// and joins the cgroups through the given files (see `join_cgroup`) before it runs a single
/// instruction of the program. (Agents start with [`start`], which needs no `fork`.)
pub fn prepare_child(cmd: &mut Command, join_cgroups: Vec<CString>) {
    cmd.process_group(0);
    let parent = std::process::id() as libc::pid_t;
    let setup = move || -> io::Result<()> {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; no memory is passed.
        cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) })?;
        // The parent may have died before the death signal was armed: then nobody reaps us.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::other("parent exited during spawn"));
        }
        for file in &join_cgroups {
            join_cgroup(file)?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid, open, write, close); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(setup);
    }
}

/// Moves the calling process into a cgroup by writing "0" (the writer) into `file`: a v1
/// hierarchy's `tasks` or a cgroup2 `cgroup.procs`. A single-threaded process moving itself through
/// `tasks` skips the kernel's threadgroup lock, whose write side waits an RCU grace period
/// (milliseconds) on a quiet machine. Only system calls, so it may run between fork and exec.
pub(crate) fn join_cgroup(file: &CString) -> io::Result<()> {
    // SAFETY: `file` is NUL-terminated and outlives the call.
    let fd = cvt(unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: writes one byte from a static buffer to the fd just opened.
    let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    let error = io::Error::last_os_error();
    // SAFETY: closes the fd opened above, which nothing else uses.
    unsafe { libc::close(fd) };
    if written == 1 {
        Ok(())
    } else {
        Err(error)
    }
}

/// A pidfd for a child of this process, readable when it exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to a child through its pidfd, which cannot reach a recycled pid. ESRCH (it has
/// ended, not yet reaped) is not an error: the goal, that it stops, holds.
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo and no flags.
    let ret = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    match ret {
        0.. => Ok(()),
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        },
    }
}

/// Sends `signal` to every process in process group `pgid`. ESRCH (the group is gone) is not an
/// error: the goal, no process left in it, holds.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    if pgid == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill with a negative pid signals a process group; no memory is passed.
    match cvt(unsafe { libc::kill(-(pgid as libc::pid_t), signal) }) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reaps the child behind `pidfd` if it has ended (`block`: wait until it does). `Ok(None)` while
/// it runs. Works for any child of this process, however it was started.
pub fn pidfd_wait(pidfd: &OwnedFd, block: bool) -> io::Result<Option<Exit>> {
    // SAFETY: an all-zero siginfo_t is a valid value of a plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitid with P_PIDFD takes the pidfd as its id and writes at most one siginfo_t
        // into `info`, which is valid for writes.
        let ret = unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
        match cvt(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    // SAFETY: waitid filled `info` for a child-state change (or left it zeroed under WNOHANG when
    // nothing changed), so the SIGCHLD fields are the ones to read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => Exit { code: Some(status), signal: None },
        _ => Exit { code: None, signal: Some(status) },
    }))
}

pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};
