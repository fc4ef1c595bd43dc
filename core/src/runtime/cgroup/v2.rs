//! cgroup v2: one directory holds every controller; a parent hands controllers down through
//! `cgroup.subtree_control`, and freezing and killing are core files of every cgroup.

use std::path::{Path, PathBuf};

use super::files;
use super::{Backend, CgroupError, CgroupLimits, CgroupStats, Controller, Result, FREEZE_TIMEOUT, PARENT};

/// What a new process writes "0" into to join: cgroup2 keeps a process's threads together unless
/// the cgroup is threaded.
pub(super) const JOIN_FILE: &str = "cgroup.procs";

/// The kernel's default period of a cpu quota.
const DEFAULT_PERIOD_US: u64 = 100_000;
/// The controllers an agent's cgroup enables when the machine has them.
const WANTED: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

/// A cgroup2 mount.
#[derive(Debug, Clone)]
pub(super) struct V2Root {
    mount: PathBuf,
}

impl V2Root {
    pub(super) fn new(mount: PathBuf) -> V2Root {
        V2Root { mount }
    }

    pub(super) fn mount(&self) -> &Path {
        &self.mount
    }

    /// Controllers listed in the mount's `cgroup.controllers`, plus the freezer every cgroup has.
    pub(super) fn available(&self) -> Result<Vec<Controller>> {
        let listed = files::read(&self.mount, "cgroup.controllers")?;
        let mut available: Vec<Controller> =
            WANTED.into_iter().filter(|c| listed.split_whitespace().any(|name| name == c.name())).collect();
        available.push(Controller::Freezer);
        Ok(available)
    }

    /// Enables the controllers an agent uses in the mount's and `clove`'s `cgroup.subtree_control`, then
    /// makes `clove/<name>`. Fails naming the controllers `limits` need that the mount lacks, or the freezer
    /// if the kernel predates `cgroup.freeze`.
    pub(super) fn create(&self, name: &str, limits: &CgroupLimits) -> Result<V2Cgroup> {
        let available = self.available()?;
        let missing: Vec<&'static str> =
            limits.controllers().into_iter().filter(|c| !available.contains(c)).map(Controller::name).collect();
        if !missing.is_empty() {
            return Err(CgroupError::MissingControllers {
                missing,
                looked: self.mount.join("cgroup.controllers").display().to_string(),
            });
        }
        let enabled: Vec<Controller> = WANTED.into_iter().filter(|c| available.contains(c)).collect();
        let parent = self.mount.join(PARENT);
        let control = enabled.iter().map(|c| format!("+{}", c.name())).collect::<Vec<_>>().join(" ");
        if !control.is_empty() {
            files::write(&self.mount, "cgroup.subtree_control", &control)?;
        }
        files::make_parent(&parent)?;
        if !control.is_empty() {
            files::write(&parent, "cgroup.subtree_control", &control)?;
        }
        // Every non-root cgroup has it since Linux 5.2.
        if !files::exists(&parent, "cgroup.freeze") {
            return Err(CgroupError::MissingControllers {
                missing: vec![Controller::Freezer.name()],
                looked: parent.join("cgroup.freeze").display().to_string(),
            });
        }
        let dir = self.dir(name);
        files::make_cgroup(&dir)?;
        Ok(V2Cgroup { dir, enabled })
    }

    /// The directory [`V2Root::create`] makes for `name`.
    pub(super) fn dir(&self, name: &str) -> PathBuf {
        self.mount.join(PARENT).join(name)
    }
}

/// An agent's cgroup2 directory.
#[derive(Debug)]
pub(super) struct V2Cgroup {
    dir: PathBuf,
    enabled: Vec<Controller>,
}

impl V2Cgroup {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn has(&self, controller: Controller) -> bool {
        self.enabled.contains(&controller)
    }
}

/// `cpu.shares` (2..=262144, default 1024) to `cpu.weight` (1..=10000, default 100), as runc and youki do.
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9999 / 262_142
}

fn number_or_max(value: Option<u64>) -> String {
    value.map_or_else(|| "max".to_string(), |v| v.to_string())
}

impl Backend for V2Cgroup {
    fn dirs(&self) -> &[PathBuf] {
        std::slice::from_ref(&self.dir)
    }

    fn apply(&self, limits: &CgroupLimits) -> Result<()> {
        let dir = self.dir();
        if self.has(Controller::Memory) {
            if let Some(bytes) = limits.memory_bytes {
                files::write(dir, "memory.max", &bytes.to_string())?;
                // No swap under a memory limit, so swap cannot hold what the limit keeps out of memory.
                if files::exists(dir, "memory.swap.max") {
                    files::write(dir, "memory.swap.max", "0")?;
                }
            }
            // An OOM kill takes the whole agent, not one of its processes while the rest limps on.
            if files::exists(dir, "memory.oom.group") {
                files::write(dir, "memory.oom.group", "1")?;
            }
        }
        if self.has(Controller::Cpu) {
            if limits.cpu_quota_us.is_some() || limits.cpu_period_us.is_some() {
                let period = limits.cpu_period_us.unwrap_or(DEFAULT_PERIOD_US);
                files::write(dir, "cpu.max", &format!("{} {period}", number_or_max(limits.cpu_quota_us)))?;
            }
            if let Some(shares) = limits.cpu_shares {
                files::write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
            }
        }
        if let (true, Some(max)) = (self.has(Controller::Pids), limits.pids_max) {
            files::write(dir, "pids.max", &max.to_string())?;
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self.dir();
        files::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = u64::from(frozen);
        let reached =
            files::poll_until(FREEZE_TIMEOUT, || Ok(files::read_key(dir, "cgroup.events", "frozen")? == Some(want)))?;
        if reached {
            Ok(())
        } else {
            let state = if frozen { "frozen 1" } else { "frozen 0" };
            Err(CgroupError::Timeout { path: dir.join("cgroup.events"), state, timeout: FREEZE_TIMEOUT })
        }
    }

    fn stats(&self) -> Result<CgroupStats> {
        let dir = self.dir();
        let mut stats = CgroupStats {
            // Core: every cgroup reports its usage; throttling only with the cpu controller.
            cpu_usage_us: files::read_key(dir, "cpu.stat", "usage_usec")?,
            cpu_throttled_us: files::read_key(dir, "cpu.stat", "throttled_usec")?,
            nr_throttled: files::read_key(dir, "cpu.stat", "nr_throttled")?,
            ..CgroupStats::default()
        };
        if self.has(Controller::Memory) {
            stats.memory_current = Some(files::read_u64(dir, "memory.current")?);
            if files::exists(dir, "memory.peak") {
                stats.memory_peak = Some(files::read_u64(dir, "memory.peak")?);
            }
        }
        stats.oom_kills = self.oom_kills()?;
        if self.has(Controller::Pids) {
            stats.pids_current = Some(files::read_u64(dir, "pids.current")?);
        }
        Ok(stats)
    }

    fn oom_kills(&self) -> Result<Option<u64>> {
        match self.has(Controller::Memory) {
            true => files::read_key(self.dir(), "memory.events", "oom_kill"),
            false => Ok(None),
        }
    }

    fn kill_native(&self) -> Result<bool> {
        if !files::exists(self.dir(), "cgroup.kill") {
            return Ok(false);
        }
        files::write(self.dir(), "cgroup.kill", "1")?;
        Ok(true)
    }

    fn unified_dir(&self) -> Option<&Path> {
        Some(self.dir())
    }

    fn add_thread(&self, _tid: u32) -> Result<()> {
        Err(CgroupError::ThreadsNeedV1)
    }

    fn join_file(&self) -> &'static str {
        JOIN_FILE
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::fake::{content, on_mkdir, populate, TempDir};
    use super::super::{CgroupMode, CgroupRoot};
    use super::*;

    /// A fake unified root offering `controllers`, whose fake kernel fills agent `a`'s directory.
    fn fake_root(tmp: &Path, controllers: &str, agent_files: &[(&str, &str)]) -> CgroupRoot {
        populate(tmp, &[("cgroup.controllers", controllers), ("cgroup.subtree_control", "")]);
        populate(&tmp.join(PARENT), &[("cgroup.subtree_control", ""), ("cgroup.freeze", "0\n")]);
        let mut files = vec![
            ("cgroup.procs", ""),
            ("cgroup.freeze", "0\n"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"),
        ];
        files.extend_from_slice(agent_files);
        on_mkdir(&tmp.join(PARENT).join("a"), &files);
        CgroupRoot::v2(tmp)
    }

    const FULL: &[(&str, &str)] = &[
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("memory.oom.group", "0\n"),
        ("memory.current", "4096\n"),
        ("memory.peak", "65536\n"),
        ("memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n"),
        ("cpu.max", "max 100000\n"),
        ("cpu.weight", "100\n"),
        ("cpu.stat", "usage_usec 2500\nnr_periods 7\nnr_throttled 3\nthrottled_usec 900\n"),
        ("pids.max", "max\n"),
        ("pids.current", "2\n"),
    ];

    #[test]
    fn limits_and_subtree_control() {
        let tmp = TempDir::new("v2");
        let root = fake_root(&tmp.0, "cpuset cpu io memory hugetlb pids rdma misc\n", FULL);
        assert_eq!(root.mode(), CgroupMode::Unified);
        let limits = CgroupLimits {
            memory_bytes: Some(50 << 20),
            cpu_quota_us: Some(10_000),
            cpu_period_us: Some(50_000),
            cpu_shares: Some(1024),
            pids_max: Some(8),
        };
        let cg = root.create("a", &limits).unwrap();
        let dir = tmp.0.join(PARENT).join("a");
        assert_eq!(cg.paths(), std::slice::from_ref(&dir));
        assert_eq!(cg.unified_dir(), Some(dir.as_path()));
        assert_eq!(content(&tmp.0, "cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(content(&tmp.0.join(PARENT), "cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(content(&dir, "memory.max"), "52428800");
        assert_eq!(content(&dir, "memory.swap.max"), "0");
        assert_eq!(content(&dir, "memory.oom.group"), "1");
        assert_eq!(content(&dir, "cpu.max"), "10000 50000");
        assert_eq!(content(&dir, "cpu.weight"), "39");
        assert_eq!(content(&dir, "pids.max"), "8");

        let stats = cg.stats().unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_us: Some(2500),
                cpu_throttled_us: Some(900),
                nr_throttled: Some(3),
                memory_current: Some(4096),
                memory_peak: Some(65536),
                pids_current: Some(2),
                oom_kills: Some(1),
            }
        );
        let joins: Vec<_> = cg.join_files().iter().map(|f| f.to_str().unwrap().to_owned()).collect();
        assert_eq!(joins, [dir.join("cgroup.procs").to_str().unwrap()]);
        assert!(!cg.backend.kill_native().unwrap(), "no cgroup.kill in the fake");
    }

    #[test]
    fn unlimited_and_only_core_files() {
        let tmp = TempDir::new("v2-core");
        let root = fake_root(&tmp.0, "\n", &[]);
        let cg = root.create("a", &CgroupLimits::default()).unwrap();
        assert_eq!(content(&tmp.0, "cgroup.subtree_control"), "", "nothing to enable");
        let stats = cg.stats().unwrap();
        assert_eq!(stats, CgroupStats { cpu_usage_us: Some(2500), ..CgroupStats::default() });
        assert_eq!(cg.oom_kills().unwrap(), 0, "no memory controller, no count");
        // A thread cannot leave its process's domain cgroup on cgroup2.
        assert!(matches!(cg.add_thread(4243), Err(CgroupError::ThreadsNeedV1)));
    }

    #[test]
    fn missing_controllers_are_named() {
        let tmp = TempDir::new("v2-missing");
        let root = fake_root(&tmp.0, "cpu io\n", FULL);
        let limits = CgroupLimits { memory_bytes: Some(1 << 20), pids_max: Some(8), ..CgroupLimits::default() };
        let err = root.create("a", &limits).unwrap_err().to_string();
        assert!(err.starts_with("cgroup controllers missing: memory, pids (looked in "), "{err}");
        assert!(err.ends_with("cgroup.controllers)"), "{err}");
    }

    #[test]
    fn freeze_waits_for_the_event() {
        let tmp = TempDir::new("v2-freeze");
        let root = fake_root(&tmp.0, "memory\n", FULL);
        let cg = root.create("a", &CgroupLimits::default()).unwrap();
        let dir = tmp.0.join(PARENT).join("a");
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze().unwrap();
        assert_eq!(content(&dir, "cgroup.freeze"), "1");
        // The fake kernel never confirms the thaw: a bounded wait, then an error naming the file.
        let err = cg.thaw().unwrap_err().to_string();
        assert!(err.ends_with("cgroup.events did not reach frozen 0 within 2s"), "{err}");
        assert_eq!(content(&dir, "cgroup.freeze"), "0");
    }

    #[test]
    fn weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }
}
