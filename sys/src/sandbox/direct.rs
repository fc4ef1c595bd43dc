//! A program started directly, without the sandbox's confinement (an agent that was not asked to
//! be sandboxed), by the same means: everything is prepared in the parent, and the child, started
//! with `CLONE_VM | CLONE_VFORK` on a stack of its own, makes only system calls until its exec.
//! Unlike `fork`, nothing of the caller's address space (the host program's, however large) is
//! copied.
//!
//! The child arms `PR_SET_PDEATHSIG`, makes its own process group, resets every signal, writes
//! itself into its cgroups, places its descriptors (stdio, the channel at
//! [`crate::process::CHANNEL_FD`], every other one closed at exec), changes directory and execs. A
//! failure is reported as (stage, errno), as for [`super::spawn`].

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::failure::{check, read_failure, report, Failure, Stage};
use super::program::{self, PROGRAM_STACK};
use super::{child, invalid, pipe, pointer_array};

/// What to start. Descriptors are borrowed: they must stay open until [`start`] returns.
#[derive(Debug, Clone)]
pub struct DirectSpec {
    /// The program's path: absolute, or relative to `cwd` (no `PATH` search).
    pub program: CString,
    pub argv: Vec<CString>,
    /// `NAME=value` strings: the whole environment.
    pub env: Vec<CString>,
    pub cwd: CString,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Placed at [`crate::process::CHANNEL_FD`].
    pub channel: Option<RawFd>,
    /// Files that put the child in its cgroups ([`crate::process::join_cgroup`]).
    pub join_cgroups: Vec<CString>,
}

/// A started program: its pid (also its process group) and a pidfd, which reaps it.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

/// Starts `spec`; returns once it has exec'd, or fails naming the stage ("execve: No such file or
/// directory", of kind `NotFound`). Like [`super::spawn`], the program is killed when the thread
/// that called `start` exits.
pub fn start(spec: &DirectSpec) -> io::Result<Started> {
    if spec.argv.is_empty() {
        return Err(invalid("argv must name the program".into()));
    }
    if let Some(file) = spec.join_cgroups.iter().find(|p| !p.as_bytes().starts_with(b"/")) {
        return Err(invalid(format!("cgroup file {file:?} is not absolute")));
    }
    let argv = pointer_array(&spec.argv);
    let envp = pointer_array(&spec.env);
    let mut stack = vec![0u8; PROGRAM_STACK];
    let (error_read, error_write) = pipe()?;
    let error_fd = std::os::fd::AsRawFd::as_raw_fd(&error_write);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut pidfd: RawFd = -1;
    let started = program::vfork(&mut stack, Some(&mut pidfd), &mut || {
        let failure = match setup(spec, parent) {
            Ok(()) => {
                // SAFETY: the path and the arrays are NUL-terminated and live in the parent's
                // memory, which this child shares until the exec; execve returns only on failure.
                unsafe { libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                Failure::new(Stage::Execve, super::failure::errno())
            }
            Err(failure) => failure,
        };
        report(error_fd, failure)
    });
    drop(error_write);
    let pid = started.map_err(|f| f.into_error())?;
    // SAFETY: clone succeeded with CLONE_PIDFD, so the kernel stored a new pidfd we alone own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let detail = |stage: Stage, index: usize| match stage {
        Stage::JoinCgroup => spec.join_cgroups.get(index).map(|f| f.to_string_lossy().into_owned()),
        _ => None,
    };
    match read_failure(std::os::fd::AsRawFd::as_raw_fd(&error_read), detail) {
        Ok(()) => Ok(Started { pid: pid as u32, pidfd }),
        Err(e) => {
            // It has exited already (the failure report was its last act): reap it.
            let _ = super::wait(&pidfd);
            Err(e)
        }
    }
}

/// The child's steps before its exec.
fn setup(spec: &DirectSpec, parent: libc::pid_t) -> Result<(), Failure> {
    program::arm_deathsig()?;
    // SAFETY: getppid, setpgid and chdir take integers or a NUL-terminated path.
    unsafe {
        if libc::getppid() != parent {
            return Err(Failure::new(Stage::ParentGone, libc::ESRCH));
        }
        check(libc::setpgid(0, 0).into(), Stage::ProcessGroup, 0)?;
    }
    program::reset_signals()?;
    child::join_cgroups(&spec.join_cgroups)?;
    program::place_fds([spec.stdin, spec.stdout, spec.stderr], spec.channel)?;
    // SAFETY: `cwd` is NUL-terminated.
    check(unsafe { libc::chdir(spec.cwd.as_ptr()) }.into(), Stage::Chdir, 0).map(drop)
}
