//! What runs in a new sandbox between clone3 and execve (init's setup), and the plan it follows,
//! prepared in the parent. The program's own steps are in [`super::program`].
//!
//! Everything here after the clone is async-signal-safe: system calls on memory the parent
//! prepared, no allocation, no lock, no panic path. A failure is sent to the parent as a
//! [`Failure`] record on the error pipe, whose write end closes at exec.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use super::failure::{check, report, Failure, Stage};
use super::program::{self, Program, Request};
use super::{mounts, netns, Layers, SandboxSpec};

/// The ends of the sync socket pair and of the error pipe, which the child knows by number (all
/// close-on-exec).
pub(super) struct Pipes {
    pub sync_read: RawFd,
    pub sync_write: RawFd,
    pub error_read: RawFd,
    pub error_write: RawFd,
}

/// Everything the child needs, owned by the parent's stack frame and so present in the child's copy.
pub(super) struct Plan<'a> {
    spec: &'a SandboxSpec,
    program: Program<'a>,
    mounts: mounts::MountPlan,
    program_stack: Vec<u8>,
}

impl<'a> Plan<'a> {
    /// Validates `spec` and prepares every string, array and program the child will use.
    pub fn new(spec: &'a SandboxSpec) -> io::Result<Plan<'a>> {
        if let Some(file) = spec.join_cgroups.iter().find(|p| !p.as_bytes().starts_with(b"/")) {
            return Err(super::invalid(format!("cgroup file {file:?} is not absolute")));
        }
        let program = Program::new(Request {
            argv: &spec.argv,
            env: &spec.env,
            cwd: &spec.cwd,
            uid: spec.uid,
            gid: spec.gid,
            rlimits: &spec.rlimits,
            seccomp: spec.seccomp,
            landlock: spec.landlock.as_ref(),
            dev_pts: Some(spec.root.dev_pts),
            stdio: [spec.stdin, spec.stdout, spec.stderr],
            channel: spec.channel,
        })?;
        let mounts = mounts::MountPlan::new(&spec.root, spec.namespaces.pid)?;
        Ok(Plan { spec, program, mounts, program_stack: vec![0; program::PROGRAM_STACK] })
    }

    pub fn clone_flags(&self) -> u64 {
        let ns = self.spec.namespaces;
        // The cgroup namespace is entered after the hook moved init, so that its root is the
        // sandbox's own cgroup rather than the runtime's.
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        for (on, flag) in [
            (ns.pid, libc::CLONE_NEWPID),
            // One made ahead is entered by the parent's thread around the clone instead.
            (ns.net && self.spec.network_namespace.is_none(), libc::CLONE_NEWNET),
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
            seccomp: self.program.seccomp(),
            landlock_abi: self.program.landlock().map(|l| l.abi()),
        }
    }

    /// Which tree, mount step, landlock rule or rlimit a failure's index names.
    pub fn detail(&self, stage: Stage, index: usize) -> Option<String> {
        match stage {
            Stage::OpenTree | Stage::SetMountAttributes => self.mounts.tree_source(index),
            Stage::Mount => self.mounts.step_target(index),
            Stage::JoinCgroup => self.spec.join_cgroups.get(index).map(|f| f.to_string_lossy().into_owned()),
            _ => self.program.detail(stage, index),
        }
    }
}

/// The child of clone3: becomes the sandbox's init, or reports why it could not.
pub(super) fn init(plan: &mut Plan<'_>, pipes: &Pipes) -> ! {
    let failure = match setup(plan, pipes) {
        Ok(pid) => program::reap(pid),
        Err(failure) => failure,
    };
    report(pipes.error_write, failure)
}

/// Init's part, up to forking the program; returns the program's pid.
fn setup(plan: &mut Plan<'_>, pipes: &Pipes) -> Result<libc::pid_t, Failure> {
    program::arm_deathsig()?;
    // SAFETY: the closed fds are this process's copies of the parent's ends, which the child must
    // not hold (end of file on the sync socket means the parent died).
    unsafe {
        libc::close(pipes.sync_write);
        libc::close(pipes.error_read);
    }
    program::reset_signals()?;
    let spec = plan.spec;
    // What needs neither the id maps nor the cgroups is done while the parent makes them.
    mounts::make_private()?;
    // With host uid 0 still ours, bind sources resolve with the spawner's permissions.
    plan.mounts.open_trees()?;
    if spec.namespaces.uts {
        let name = spec.hostname.as_bytes();
        // SAFETY: `name` is valid for reads of its length.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }.into(), Stage::Hostname, 0)?;
    }
    // A namespace made ahead has loopback up already, and is not init's to configure.
    if spec.namespaces.net && spec.network_namespace.is_none() {
        netns::loopback_up().map_err(|e| Failure::os(Stage::Loopback, 0, &e))?;
    }
    let mut byte = 0u8;
    // SAFETY: `byte` is valid for a one-byte write; sync_read is open.
    let n = unsafe { libc::read(pipes.sync_read, (&mut byte as *mut u8).cast(), 1) };
    if n != 1 {
        // The parent died or gave up before the release: nothing to report to.
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(1) }
    }
    // Before the cgroup namespace, whose root it becomes, and while the host ids are ours.
    join_cgroups(&spec.join_cgroups)?;
    if spec.namespaces.cgroup {
        // SAFETY: unshare takes flags only.
        check(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }.into(), Stage::CgroupNamespace, 0)?;
    }
    // Init can create the mount points once its fsuid is mapped.
    program::take_ids(plan.program.uid, plan.program.gid, plan.program.privileged)?;
    // Changing ids cleared the death signal: arm it again, then see whether the parent died meanwhile.
    program::arm_deathsig()?;
    // SAFETY: poll reads and writes one pollfd on this stack; close takes the fd.
    unsafe {
        let mut pfd = libc::pollfd { fd: pipes.sync_read, events: 0, revents: 0 };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            return Err(Failure::new(Stage::ParentGone, libc::ESRCH));
        }
        libc::close(pipes.sync_read);
    }
    plan.mounts.build_root()?;
    if let Some(landlock) = plan.program.landlock() {
        landlock.add_rules()?;
    }
    program::block_forwarded(libc::SIG_BLOCK)?;
    let program = &plan.program;
    program::vfork(&mut plan.program_stack, None, &mut || {
        let Err(failure) = program.become_program();
        report(pipes.error_write, failure)
    })
}

/// Writes this process into the cgroups through `files` (see [`crate::process::join_cgroup`]).
pub(super) fn join_cgroups(files: &[CString]) -> Result<(), Failure> {
    for (index, file) in files.iter().enumerate() {
        crate::process::join_cgroup(file).map_err(|e| Failure::os(Stage::JoinCgroup, index, &e))?;
    }
    Ok(())
}
