//! Where a child failed, as a (stage, index, errno) record: written on the error pipe by the child
//! (async-signal-safe: one `write` of 12 bytes), decoded by the parent into an error that names the
//! stage ("pivot_root: EPERM").

use std::io;
use std::os::fd::RawFd;

use super::stage_error;

/// Where the child failed, sent to the parent as three native-endian 32-bit words.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure {
    stage: Stage,
    /// Which mount step, tree, landlock rule, rlimit or cgroup, for the stages that have several.
    index: u32,
    errno: i32,
}

impl Failure {
    pub fn new(stage: Stage, errno: i32) -> Failure {
        Failure { stage, index: 0, errno }
    }

    /// A failed `io` call in the `index`th of a stage's steps (an `io::Error` of an errno allocates
    /// nothing, so this is safe after a clone).
    pub fn os(stage: Stage, index: usize, err: &io::Error) -> Failure {
        Failure::at(stage, index, err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// In the parent: the error this failure stands for, naming its stage.
    pub fn into_error(self) -> io::Error {
        stage_error(self.stage.name(), io::Error::from_raw_os_error(self.errno))
    }

    /// A failure of the `index`th of a stage's several steps.
    pub fn at(stage: Stage, index: usize, errno: i32) -> Failure {
        Failure { stage, index: index as u32, errno }
    }
}

/// Every step a child can fail in, numbered on the error pipe by its discriminant.
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
    JoinCgroup,
    Setns,
    EnterRoot,
    ProcessGroup,
}

const STAGES: [Stage; 32] = [
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
    Stage::JoinCgroup,
    Stage::Setns,
    Stage::EnterRoot,
    Stage::ProcessGroup,
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
            Stage::ParentGone => "parent exited during setup",
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
            Stage::JoinCgroup => "join cgroup",
            Stage::Setns => "setns into the sandbox",
            Stage::EnterRoot => "chdir to the sandbox root",
            Stage::ProcessGroup => "setpgid",
        }
    }
}

/// `Ok` for a non-negative return, else the stage with errno.
pub(super) fn check(ret: libc::c_long, stage: Stage, index: usize) -> Result<libc::c_long, Failure> {
    if ret < 0 {
        Err(Failure::at(stage, index, errno()))
    } else {
        Ok(ret)
    }
}

pub(super) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, valid for reads.
    unsafe { *libc::__errno_location() }
}

/// In a child: sends `failure` to the parent and exits.
pub(super) fn report(fd: RawFd, failure: Failure) -> ! {
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

/// In the parent: reads the child's failure record. `Ok` on EOF (the program's execve closed the
/// pipe); otherwise the error names the stage, with `detail(stage, index)` after it when that
/// says which path or limit it was.
pub(super) fn read_failure(fd: RawFd, detail: impl Fn(Stage, usize) -> Option<String>) -> io::Result<()> {
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
    let name = match detail(stage, word(4) as usize) {
        Some(detail) => format!("{} {detail}", stage.name()),
        None => stage.name().to_owned(),
    };
    Err(stage_error(&name, io::Error::from_raw_os_error(word(8) as i32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_is_listed_at_its_number() {
        for (i, stage) in STAGES.iter().enumerate() {
            assert_eq!(*stage as usize, i, "{stage:?}");
        }
    }
}
