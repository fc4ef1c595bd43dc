//! Running another program inside a running sandbox: in its namespaces, its root, its cgroups, as
//! its unprivileged ids, with the same confinement as the sandbox's own program.
//!
//! [`enter`] prepares everything in the parent (the program's plan, the landlock ruleset), then
//! `clone3`s a **helper** that makes only async-signal-safe system calls:
//!
//! 1. it arms `PR_SET_PDEATHSIG`, resets signal dispositions and joins the given cgroups (host
//!    paths, so before anything else);
//! 2. `setns(init_pidfd, ...)` enters the user, mount, pid, net, uts, ipc and cgroup namespaces of
//!    the sandbox's init at once; entering the mount namespace puts root and working directory at
//!    the sandbox's root, and `chdir("/")` makes sure of it;
//! 3. it takes the sandbox ids (clearing supplementary groups), adds the landlock rules (inside
//!    paths, resolved now) and forks: the **program** process is in the sandbox's pid namespace
//!    (a low pid there), its parent death signal armed against the helper, and then takes the same
//!    steps as a sandbox's program ([`super::program::Program::become_program`]);
//! 4. the helper stays outside the pid namespace as the program's reaper, like a sandbox's init:
//!    it holds no descriptor and no capability, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1
//!    and SIGUSR2, and exits with the program's status (`128 + s` for a signal `s`). Killing it
//!    kills the program (its parent death signal); the program's own children are reparented to
//!    the sandbox's init when it ends.
//!
//! A failure in any step is reported as (stage, errno), as for [`super::spawn`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::failure::{check, read_failure, report, Failure, Stage};
use super::program::{self, Program, Request};
use super::{invalid, pipe, stage_error, CloneArgs, LandlockRules, Rlimit};

/// What to run inside a running sandbox. Descriptors are borrowed: they must stay open until
/// [`enter`] returns.
#[derive(Debug, Clone)]
pub struct EnterSpec {
    /// `argv[0]` is the program's absolute path inside the sandbox (no `PATH` search).
    pub argv: Vec<CString>,
    /// `NAME=value` strings: the whole environment.
    pub env: Vec<CString>,
    /// The ids inside (the sandbox program's).
    pub uid: u32,
    pub gid: u32,
    /// The working directory inside.
    pub cwd: CString,
    pub rlimits: Vec<Rlimit>,
    /// Install the deny-list seccomp filter.
    pub seccomp: bool,
    /// Landlock rules naming inside paths, as for [`super::spawn`]; `/dev/pts` is allowed when the
    /// sandbox has it. Fails when the kernel has no landlock.
    pub landlock: Option<LandlockRules>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Host paths of the files that join the sandbox's cgroups (`tasks` on v1, `cgroup.procs` on
    /// cgroup2), written before entering its namespaces.
    pub join_cgroups: Vec<CString>,
    /// A cgroup2 directory the helper is created in instead (`CLONE_INTO_CGROUP`, see
    /// [`super::SandboxSpec::start_in_cgroup`]). Borrowed like the other descriptors.
    pub start_in_cgroup: Option<RawFd>,
}

/// A program started inside a sandbox: the host pid and a pidfd of its helper, whose exit status
/// is the program's. Reap it with [`super::wait`] or [`super::wait_nohang`] (code `128 + s` for a
/// program killed by signal `s`); SIGKILL to the pidfd kills the program too, other forwarded
/// signals reach the program.
#[derive(Debug)]
pub struct Entered {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

/// Every namespace a sandbox can have, entered together. One the sandbox shares with the runtime
/// (the network of an agent allowed it) is entered again, which needs CAP_SYS_ADMIN over it: a
/// runtime that is not root can enter only sandboxes with every namespace of their own.
const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP;

/// What the helper needs, prepared in the parent.
struct Plan<'a> {
    program: Program<'a>,
    join_cgroups: &'a [CString],
    init_pidfd: RawFd,
    /// This process's pid: the helper's parent while the caller waits in [`enter`].
    parent: libc::pid_t,
    error_read: RawFd,
    error_write: RawFd,
    program_stack: Vec<u8>,
}

/// Starts `spec` inside the sandbox whose init `init_pidfd` refers to ([`super::Sandboxed::pidfd`]).
/// Fails, naming the stage, when any step fails: "setns into the sandbox: No such process" when
/// the sandbox has ended (exited or reaped).
///
/// Like [`super::spawn`], the program is killed when the thread that called `enter` exits, so
/// call it from a thread that outlives what it starts.
pub fn enter(init_pidfd: &OwnedFd, spec: &EnterSpec) -> io::Result<Entered> {
    let program = Program::new(Request {
        argv: &spec.argv,
        env: &spec.env,
        cwd: &spec.cwd,
        uid: spec.uid,
        gid: spec.gid,
        rlimits: &spec.rlimits,
        seccomp: spec.seccomp,
        landlock: spec.landlock.as_ref(),
        dev_pts: None,
        stdio: [spec.stdin, spec.stdout, spec.stderr],
        channel: None,
    })?;
    if let Some(file) = spec.join_cgroups.iter().find(|p| !p.as_bytes().starts_with(b"/")) {
        return Err(invalid(format!("cgroup file {file:?} is not absolute")));
    }
    let (error_read, error_write) = pipe()?;
    let mut plan = Plan {
        program,
        join_cgroups: &spec.join_cgroups,
        init_pidfd: init_pidfd.as_raw_fd(),
        parent: std::process::id() as libc::pid_t,
        error_read: error_read.as_raw_fd(),
        error_write: error_write.as_raw_fd(),
        program_stack: vec![0; program::PROGRAM_STACK],
    };

    let mut pidfd: RawFd = -1;
    let (into_flag, cgroup) = super::into_cgroup(spec.start_in_cgroup);
    let args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64 | into_flag,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM creates a copy of this process that continues on a copy of
    // this stack; `args` is valid for reads of its size and `pidfd` for a write of an int. The
    // child runs only `helper`, which never returns, allocates nothing and takes no lock.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        helper(&mut plan);
    }
    if pid < 0 {
        return Err(stage_error("clone3", io::Error::last_os_error()));
    }
    // SAFETY: clone3 succeeded with CLONE_PIDFD, so the kernel stored a new pidfd we alone own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(error_write);
    let started = read_failure(error_read.as_raw_fd(), |stage, index| match stage {
        Stage::JoinCgroup => spec.join_cgroups.get(index).map(|p| p.to_string_lossy().into_owned()),
        _ => plan.program.detail(stage, index),
    });
    match started {
        Ok(()) => Ok(Entered { pid: pid as u32, pidfd }),
        Err(e) => {
            // Ignoring a failed kill: the helper may already be gone; the wait reaps it either way.
            let _ = crate::process::pidfd_signal(&pidfd, libc::SIGKILL);
            super::wait(&pidfd)?;
            Err(e)
        }
    }
}

/// The child of clone3: enters the sandbox, forks the program and reaps it, or reports why not.
fn helper(plan: &mut Plan<'_>) -> ! {
    let failure = match setup(plan) {
        Ok(pid) => program::reap(pid),
        Err(failure) => failure,
    };
    report(plan.error_write, failure)
}

/// The helper's part, up to forking the program; returns the program's pid.
fn setup(plan: &mut Plan<'_>) -> Result<libc::pid_t, Failure> {
    program::arm_deathsig()?;
    parent_alive(plan)?;
    // SAFETY: the helper's copy of the parent's read end, which it must not hold.
    unsafe { libc::close(plan.error_read) };
    program::reset_signals()?;
    super::child::join_cgroups(plan.join_cgroups)?;
    // SAFETY: setns takes a pidfd this process inherited and flags; chdir reads a literal.
    unsafe {
        check(libc::setns(plan.init_pidfd, NAMESPACES).into(), Stage::Setns, 0)?;
        check(libc::chdir(c"/".as_ptr()).into(), Stage::EnterRoot, 0)?;
    }
    let program = &plan.program;
    program::take_ids(program.uid, program.gid, program.privileged)?;
    // Changing ids cleared the death signal: arm it again, then see whether the parent died meanwhile.
    program::arm_deathsig()?;
    parent_alive(plan)?;
    if let Some(landlock) = program.landlock() {
        landlock.add_rules()?;
    }
    program::block_forwarded(libc::SIG_BLOCK)?;
    // The program sees the helper as pid 0 (outside its pid namespace), or by its pid when the
    // sandbox shares this one.
    // SAFETY: getpid has no preconditions.
    let helper = unsafe { libc::getpid() };
    let error_write = plan.error_write;
    program::vfork(&mut plan.program_stack, None, &mut || {
        let Err(failure) = program::arm_deathsig().and_then(|()| {
            // SAFETY: getppid has no preconditions.
            let parent = unsafe { libc::getppid() };
            if parent != 0 && parent != helper {
                // Reparented: the helper died before the death signal was armed.
                return Err(Failure::new(Stage::ParentGone, libc::ESRCH));
            }
            program.become_program()
        });
        report(error_write, failure)
    })
}

/// Fails when the helper's parent exited (the caller's thread waits in [`enter`] until the exec,
/// so only the whole process can have gone, and the helper was reparented).
fn parent_alive(plan: &Plan<'_>) -> Result<(), Failure> {
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != plan.parent {
        return Err(Failure::new(Stage::ParentGone, libc::ESRCH));
    }
    Ok(())
}
