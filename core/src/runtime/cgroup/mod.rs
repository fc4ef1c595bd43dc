//! One cgroup per sandboxed agent: its memory leak OOM-kills only itself, its busy loop is throttled, its
//! fork bomb stops at `pids.max`, and PAUSE freezes it.
//!
//! Call order: [`CgroupRoot::detect`] once → [`CgroupRoot::create`] per agent (writes every limit, or fails
//! naming the controllers that are missing: an agent never runs with weaker limits than asked) →
//! [`AgentCgroup::join_files`] (a new process writes itself in) → [`AgentCgroup::freeze`] / [`AgentCgroup::thaw`] / [`AgentCgroup::stats`] →
//! [`AgentCgroup::kill_all`] → [`AgentCgroup::remove`] (drop removes too, best effort).
//!
//! Agent cgroups live at `clove/<name>` under each hierarchy: under every v1 controller mount the agent
//! needs (found in `/proc/self/mountinfo`) on legacy and hybrid machines, or in one cgroup2 directory on
//! unified ones, chosen by the `statfs` magic of `/sys/fs/cgroup`. The `clove` parents are shared and stay.
//! `v1` and `v2` implement one private trait; every file access goes through `files`, so both run
//! against fake roots in tests.

mod detect;
mod files;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory under each hierarchy that holds the agents' cgroups.
const PARENT: &str = "clove";
/// How long [`AgentCgroup::freeze`] and [`AgentCgroup::thaw`] wait for the kernel to confirm.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`AgentCgroup::kill_all`] waits for the last process to leave.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`AgentCgroup::remove`] retries while processes are still leaving.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors of the cgroup layer.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path} is not a cgroup mount (filesystem magic {magic:#x})")]
    NotMounted { path: PathBuf, magic: u64 },
    #[error("cgroup controllers missing: {} (looked in {looked})", .missing.join(", "))]
    MissingControllers { missing: Vec<&'static str>, looked: String },
    #[error("invalid cgroup name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ -")]
    InvalidName(String),
    #[error("cgroup {path} still has processes")]
    Busy { path: PathBuf },
    #[error(
        "cgroup2 keeps a process's threads in its own cgroup: a VM's threads get limits and PAUSE on cgroup v1 only"
    )]
    ThreadsNeedV1,
    #[error("{path} did not reach {state} within {timeout:?}")]
    Timeout { path: PathBuf, state: &'static str, timeout: Duration },
    #[error("unexpected content {content:?} in {path}")]
    Parse { path: PathBuf, content: String },
    #[error("{action} {path}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// How the machine mounts its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup2, at `/sys/fs/cgroup`.
    Unified,
    /// v1 controller hierarchies, and a cgroup2 mount that Clove does not use.
    Hybrid,
    /// v1 controller hierarchies only.
    Legacy,
}

/// A controller an agent's cgroup can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    /// v1 only: cpu usage. cgroup2 reports usage in every cgroup's `cpu.stat`.
    Cpuacct,
    Pids,
    /// Always needed (PAUSE). cgroup2 has it in every cgroup (`cgroup.freeze`).
    Freezer,
}

impl Controller {
    /// Every controller an agent's cgroup joins when the machine has it.
    pub const ALL: [Controller; 5] =
        [Controller::Memory, Controller::Cpu, Controller::Cpuacct, Controller::Pids, Controller::Freezer];

    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// The limits of one agent. `None` means unlimited: the kernel's default, which a new cgroup has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Memory, swap included where the kernel can count swap.
    pub memory_bytes: Option<u64>,
    /// CPU time allowed per period (10 % of one CPU: 10 000 of 100 000).
    pub cpu_quota_us: Option<u64>,
    /// The period of the quota (default 100 000 µs).
    pub cpu_period_us: Option<u64>,
    /// Relative weight, in v1 `cpu.shares` units (default 1024); converted to `cpu.weight` on cgroup2.
    pub cpu_shares: Option<u64>,
    /// Processes and threads.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    /// The controllers these limits need, besides the freezer that every agent needs.
    fn controllers(&self) -> Vec<Controller> {
        let mut needed = Vec::new();
        if self.memory_bytes.is_some() {
            needed.push(Controller::Memory);
        }
        if self.cpu_quota_us.is_some() || self.cpu_period_us.is_some() || self.cpu_shares.is_some() {
            needed.push(Controller::Cpu);
        }
        if self.pids_max.is_some() {
            needed.push(Controller::Pids);
        }
        needed
    }
}

/// What an agent's cgroup has used. `None`: this machine's cgroups do not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu_usage_us: Option<u64>,
    /// Time the agent was ready to run but out of quota.
    pub cpu_throttled_us: Option<u64>,
    /// Periods in which the agent ran out of quota.
    pub nr_throttled: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    /// Processes the kernel OOM-killed in this cgroup.
    pub oom_kills: Option<u64>,
}

/// What a v1 or v2 agent cgroup does its own way.
trait Backend: fmt::Debug + Send {
    /// Every directory of the cgroup, one per hierarchy it joined.
    fn dirs(&self) -> &[PathBuf];
    /// Writes the limits that are set into a fresh cgroup, which has the kernel's defaults.
    fn apply(&self, limits: &CgroupLimits) -> Result<()>;
    /// Freezes or thaws, and waits until the kernel says it is done.
    fn set_frozen(&self, frozen: bool) -> Result<()>;
    fn stats(&self) -> Result<CgroupStats>;
    /// Processes the kernel OOM-killed in this cgroup; `None` when it does not say.
    fn oom_kills(&self) -> Result<Option<u64>>;
    /// Kills every process in one step when the kernel can (`cgroup.kill`); `false` when it cannot.
    fn kill_native(&self) -> Result<bool>;
    /// The cgroup2 directory, for `CLONE_INTO_CGROUP`.
    fn unified_dir(&self) -> Option<&Path>;
    /// Moves one thread of this process in.
    fn add_thread(&self, tid: u32) -> Result<()>;
    /// The file in each directory a new process writes "0" into to join.
    fn join_file(&self) -> &'static str;
}

/// `file` in each of `dirs`, as C strings for a child to open.
fn join_paths(dirs: &[PathBuf], file: &str) -> Vec<CString> {
    // A cgroup path is a directory we named from a checked name; it holds no NUL byte.
    dirs.iter().filter_map(|dir| CString::new(dir.join(file).into_os_string().into_vec()).ok()).collect()
}

#[derive(Debug, Clone)]
enum Hierarchies {
    V1(v1::V1Root),
    V2(v2::V2Root),
}

/// Where this machine's cgroups are, and how they are mounted.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    mode: CgroupMode,
    hierarchies: Hierarchies,
}

impl CgroupRoot {
    /// Finds the cgroups of this machine: cgroup2 when `/sys/fs/cgroup` is a cgroup2 mount, else the v1
    /// controller mounts listed in `/proc/self/mountinfo`.
    pub fn detect() -> Result<CgroupRoot> {
        let base = Path::new("/sys/fs/cgroup");
        let magic = clove_sys::statfs::filesystem_magic(base).map_err(|source| CgroupError::Io {
            action: "inspecting".into(),
            path: base.to_path_buf(),
            source,
        })?;
        let mountinfo = Path::new("/proc/self/mountinfo");
        let mounts = std::fs::read_to_string(mountinfo).map_err(|source| CgroupError::Io {
            action: "reading".into(),
            path: mountinfo.to_path_buf(),
            source,
        })?;
        detect::from_mounts(base, magic, &mounts)
    }

    /// v1 hierarchies at the given mount points (a fake root in tests). Co-mounted controllers share a path.
    pub fn v1(mounts: impl IntoIterator<Item = (Controller, PathBuf)>) -> CgroupRoot {
        CgroupRoot { mode: CgroupMode::Legacy, hierarchies: Hierarchies::V1(v1::V1Root::new(mounts)) }
    }

    /// A cgroup2 hierarchy mounted at `mount` (a fake root in tests).
    pub fn v2(mount: impl Into<PathBuf>) -> CgroupRoot {
        CgroupRoot { mode: CgroupMode::Unified, hierarchies: Hierarchies::V2(v2::V2Root::new(mount.into())) }
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The controllers an agent's cgroup can use here.
    pub fn available(&self) -> Result<Vec<Controller>> {
        match &self.hierarchies {
            Hierarchies::V1(root) => Ok(root.available()),
            Hierarchies::V2(root) => root.available(),
        }
    }

    /// The names under `clove/` in any hierarchy: agents' cgroups, live or left by a runtime that
    /// died.
    pub fn agent_names(&self) -> Vec<String> {
        let mounts: Vec<&Path> = match &self.hierarchies {
            Hierarchies::V1(root) => root.mounts().collect(),
            Hierarchies::V2(root) => vec![root.mount()],
        };
        let mut names: Vec<String> = mounts
            .into_iter()
            .filter_map(|mount| std::fs::read_dir(mount.join("clove")).ok())
            .flatten()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// What [`AgentCgroup::join_files`] will say of the cgroup `create(name, ..)` makes, known before
    /// it is made: a sandbox's init is told before the cgroup exists, and joins once it does.
    pub fn join_files(&self, name: &str) -> Vec<CString> {
        match &self.hierarchies {
            Hierarchies::V1(root) => join_paths(&root.dirs(name), v1::JOIN_FILE),
            Hierarchies::V2(root) => join_paths(&[root.dir(name)], v2::JOIN_FILE),
        }
    }

    /// Creates the cgroup `clove/<name>` with these limits (replacing an empty leftover of a crash).
    /// Fails, naming them, when a controller the limits or PAUSE need is missing. Names are agent ids: 1 to
    /// 64 of `A-Z a-z 0-9 _ -`, unique among live agents.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<AgentCgroup> {
        let name_ok =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(CgroupError::InvalidName(name.to_string()));
        }
        let backend: Box<dyn Backend> = match &self.hierarchies {
            Hierarchies::V1(root) => Box::new(root.create(name, limits)?),
            Hierarchies::V2(root) => Box::new(root.create(name, limits)?),
        };
        // Built before the limits are written, so a failure below removes the directories on drop.
        let cgroup = AgentCgroup { name: name.to_string(), backend, removed: false };
        cgroup.backend.apply(limits)?;
        Ok(cgroup)
    }
}

/// One agent's cgroup. Dropping it removes its directories, best effort; call [`AgentCgroup::kill_all`]
/// first, since a cgroup with processes cannot be removed.
#[derive(Debug)]
pub struct AgentCgroup {
    name: String,
    backend: Box<dyn Backend>,
    removed: bool,
}

impl AgentCgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup's directories, one per hierarchy.
    pub fn paths(&self) -> &[PathBuf] {
        self.backend.dirs()
    }

    /// The cgroup2 directory (open it for `CLONE_INTO_CGROUP`); `None` on v1.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.backend.unified_dir()
    }

    /// The files a new, single-threaded process writes "0" into to join this cgroup before it runs
    /// anything (`clove_sys::process::start`, a sandbox's init, an EXEC's helper): `tasks` in each v1
    /// hierarchy, where a thread moving itself skips the kernel's threadgroup lock and the RCU grace
    /// period its writer waits for (~10 ms), or cgroup2's `cgroup.procs`.
    pub fn join_files(&self) -> Vec<CString> {
        join_paths(self.backend.dirs(), self.backend.join_file())
    }

    /// Moves one thread of this process (a VM's vCPU, say) into the cgroup, on cgroup v1; cgroup2 refuses
    /// with [`CgroupError::ThreadsNeedV1`]. Such a cgroup holds the host's own process: never
    /// [`AgentCgroup::kill_all`] it.
    pub fn add_thread(&self, tid: u32) -> Result<()> {
        self.backend.add_thread(tid)
    }

    /// Every process in the cgroup, in any of its hierarchies, sorted.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let mut pids = Vec::new();
        for dir in self.backend.dirs() {
            pids.extend(files::read_pids(dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Stops every process in the cgroup (PAUSE), returning once the kernel says all are frozen.
    /// One that cannot be frozen in time (stuck in the kernel) undoes it: half frozen is neither
    /// state, and RESUME of an agent that is not paused would not thaw the rest.
    pub fn freeze(&self) -> Result<()> {
        let frozen = self.backend.set_frozen(true);
        if frozen.is_err() {
            let _ = self.backend.set_frozen(false);
        }
        frozen
    }

    /// Lets a frozen cgroup run again (RESUME).
    pub fn thaw(&self) -> Result<()> {
        self.backend.set_frozen(false)
    }

    pub fn stats(&self) -> Result<CgroupStats> {
        self.backend.stats()
    }

    /// How many processes of this cgroup the kernel has OOM-killed (0 when it does not say).
    pub fn oom_kills(&self) -> Result<u64> {
        Ok(self.backend.oom_kills()?.unwrap_or(0))
    }

    /// SIGKILLs every process in the cgroup and waits until none is left. With cgroup2's `cgroup.kill` the
    /// kernel does it; otherwise the cgroup is frozen (so nothing forks meanwhile), each listed pid is killed
    /// through a pidfd, and it is thawed so the kills land, in rounds until it is empty.
    pub fn kill_all(&self) -> Result<()> {
        let native = self.backend.kill_native()?;
        let done = files::poll_until(KILL_TIMEOUT, || {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(true);
            }
            if !native {
                // A freeze that times out (a task stuck in the kernel) still leaves the kills worth sending.
                let frozen = self.freeze().is_ok();
                // A pid that cannot be signalled has just exited; one that stays ends as `Busy` below.
                for pid in pids {
                    let _ = clove_sys::process::pidfd_open(pid)
                        .and_then(|fd| clove_sys::process::pidfd_signal(&fd, clove_sys::process::SIGKILL));
                }
                if frozen {
                    self.thaw()?;
                }
            }
            Ok(false)
        })?;
        if done {
            Ok(())
        } else {
            // INVARIANT: every backend has at least one directory, so `first` is never the empty default.
            Err(CgroupError::Busy { path: self.backend.dirs().first().cloned().unwrap_or_default() })
        }
    }

    /// Removes the cgroup's directories, retrying briefly while processes are still leaving. Fails with
    /// [`CgroupError::Busy`] if processes stay; calling it again after a success does nothing.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        for dir in self.backend.dirs() {
            files::remove_dir(dir, REMOVE_TIMEOUT)?;
        }
        self.removed = true;
        Ok(())
    }
}

impl Drop for AgentCgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
