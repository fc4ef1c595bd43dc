//! cgroup v1: one directory per controller hierarchy (co-mounted controllers such as `cpu,cpuacct` share
//! one), each with its own control files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files;
use super::{Backend, CgroupError, CgroupLimits, CgroupStats, Controller, Result, FREEZE_TIMEOUT, PARENT};

/// What a new process writes "0" into to join: `tasks` moves the writing thread alone, which the
/// kernel does without its threadgroup lock.
pub(super) const JOIN_FILE: &str = "tasks";

/// Where each v1 controller is mounted.
#[derive(Debug, Clone)]
pub(super) struct V1Root {
    mounts: Vec<(Controller, PathBuf)>,
}

impl V1Root {
    pub(super) fn new(mounts: impl IntoIterator<Item = (Controller, PathBuf)>) -> V1Root {
        V1Root { mounts: mounts.into_iter().collect() }
    }

    /// The mount point of `controller`'s hierarchy.
    pub(super) fn mount(&self, controller: Controller) -> Option<&Path> {
        self.mounts.iter().find(|(c, _)| *c == controller).map(|(_, path)| path.as_path())
    }

    /// Every hierarchy's mount point.
    pub(super) fn mounts(&self) -> impl Iterator<Item = &Path> {
        self.mounts.iter().map(|(_, path)| path.as_path())
    }

    pub(super) fn available(&self) -> Vec<Controller> {
        Controller::ALL.into_iter().filter(|c| self.mount(*c).is_some()).collect()
    }

    /// Makes `clove/<name>` in every hierarchy an agent uses, after checking that the ones `limits` and
    /// PAUSE need are all mounted. Limits are written by [`Backend::apply`].
    pub(super) fn create(&self, name: &str, limits: &CgroupLimits) -> Result<V1Cgroup> {
        let mut needed = limits.controllers();
        needed.push(Controller::Freezer);
        let missing: Vec<&'static str> =
            needed.iter().filter(|c| self.mount(**c).is_none()).map(|c| c.name()).collect();
        if !missing.is_empty() {
            return Err(CgroupError::MissingControllers {
                missing,
                looked: "the v1 controller mounts of /proc/self/mountinfo".into(),
            });
        }
        let dirs = self.dirs(name);
        for (made, dir) in dirs.iter().enumerate() {
            let parent = dir.parent().unwrap_or(dir);
            if let Err(e) = files::make_parent(parent).and_then(|()| files::make_cgroup(dir)) {
                // Undo the hierarchies done so far (made fresh, so empty); the failed one is not ours.
                for done in &dirs[..made] {
                    let _ = files::remove_dir(done, Duration::ZERO);
                }
                return Err(e);
            }
        }
        let by_controller =
            self.mounts.iter().map(|(controller, mount)| (*controller, agent_dir(mount, name))).collect();
        Ok(V1Cgroup { dirs, by_controller })
    }

    /// The directories [`V1Root::create`] makes for `name`, one per hierarchy.
    pub(super) fn dirs(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in self.mounts.iter().map(|(_, mount)| agent_dir(mount, name)) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }
}

fn agent_dir(mount: &Path, name: &str) -> PathBuf {
    mount.join(PARENT).join(name)
}

/// An agent's cgroup in each v1 hierarchy it joined.
#[derive(Debug)]
pub(super) struct V1Cgroup {
    /// One per hierarchy, in mount order.
    dirs: Vec<PathBuf>,
    by_controller: Vec<(Controller, PathBuf)>,
}

impl V1Cgroup {
    fn dir(&self, controller: Controller) -> Option<&Path> {
        self.by_controller.iter().find(|(c, _)| *c == controller).map(|(_, dir)| dir.as_path())
    }

    fn freezer(&self) -> Result<&Path> {
        // INVARIANT: `create` refuses to build a cgroup without the freezer; this is a second line.
        self.dir(Controller::Freezer).ok_or_else(|| CgroupError::MissingControllers {
            missing: vec![Controller::Freezer.name()],
            looked: format!("{:?}", self.dirs),
        })
    }
}

impl Backend for V1Cgroup {
    fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn apply(&self, limits: &CgroupLimits) -> Result<()> {
        if let (Some(dir), Some(bytes)) = (self.dir(Controller::Memory), limits.memory_bytes) {
            let bytes = bytes.to_string();
            files::write(dir, "memory.limit_in_bytes", &bytes)?;
            // Swap too, so it cannot hold what the limit keeps out of memory (memsw may never be
            // below the memory limit, so it comes second).
            if files::exists(dir, "memory.memsw.limit_in_bytes") {
                files::write(dir, "memory.memsw.limit_in_bytes", &bytes)?;
            }
        }
        if let Some(dir) = self.dir(Controller::Cpu) {
            if let Some(period) = limits.cpu_period_us {
                files::write(dir, "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(quota) = limits.cpu_quota_us {
                files::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if let Some(shares) = limits.cpu_shares {
                files::write(dir, "cpu.shares", &shares.to_string())?;
            }
        }
        if let (Some(dir), Some(max)) = (self.dir(Controller::Pids), limits.pids_max) {
            files::write(dir, "pids.max", &max.to_string())?;
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self.freezer()?;
        let state = if frozen { "FROZEN" } else { "THAWED" };
        files::write(dir, "freezer.state", state)?;
        // FREEZING while some task has not stopped yet; the kernel retries on each read.
        let reached = files::poll_until(FREEZE_TIMEOUT, || Ok(files::read(dir, "freezer.state")?.trim() == state))?;
        if reached {
            Ok(())
        } else {
            Err(CgroupError::Timeout { path: dir.join("freezer.state"), state, timeout: FREEZE_TIMEOUT })
        }
    }

    fn stats(&self) -> Result<CgroupStats> {
        let mut stats = CgroupStats::default();
        if let Some(dir) = self.dir(Controller::Cpuacct) {
            stats.cpu_usage_us = Some(files::read_u64(dir, "cpuacct.usage")? / 1000);
        }
        if let Some(dir) = self.dir(Controller::Cpu) {
            stats.cpu_throttled_us = files::read_key(dir, "cpu.stat", "throttled_time")?.map(|ns| ns / 1000);
            stats.nr_throttled = files::read_key(dir, "cpu.stat", "nr_throttled")?;
        }
        if let Some(dir) = self.dir(Controller::Memory) {
            stats.memory_current = Some(files::read_u64(dir, "memory.usage_in_bytes")?);
            stats.memory_peak = Some(files::read_u64(dir, "memory.max_usage_in_bytes")?);
        }
        stats.oom_kills = self.oom_kills()?;
        if let Some(dir) = self.dir(Controller::Pids) {
            stats.pids_current = Some(files::read_u64(dir, "pids.current")?);
        }
        Ok(stats)
    }

    fn oom_kills(&self) -> Result<Option<u64>> {
        match self.dir(Controller::Memory) {
            // `oom_kill` appeared in 4.13; older kernels leave the count unknown.
            Some(dir) => files::read_key(dir, "memory.oom_control", "oom_kill"),
            None => Ok(None),
        }
    }

    fn kill_native(&self) -> Result<bool> {
        Ok(false)
    }

    fn unified_dir(&self) -> Option<&Path> {
        None
    }

    fn add_thread(&self, tid: u32) -> Result<()> {
        // v1 places tasks one by one: `tasks` takes a thread, `cgroup.procs` a whole process.
        self.dirs.iter().try_for_each(|dir| files::write(dir, "tasks", &tid.to_string()))
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

    fn agent_dir(tmp: &Path, mount: &str, name: &str) -> PathBuf {
        tmp.join(mount).join(PARENT).join(name)
    }

    /// A fake hybrid machine with cpu and cpuacct co-mounted, whose fake kernel fills agent `a`'s directories.
    fn fake_root(tmp: &Path, with_memsw: bool) -> CgroupRoot {
        let mut memory = vec![
            ("cgroup.procs", ""),
            ("tasks", ""),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
        ];
        if with_memsw {
            memory.push(("memory.memsw.limit_in_bytes", "9223372036854771712\n"));
        }
        on_mkdir(&agent_dir(tmp, "memory", "a"), &memory);
        on_mkdir(
            &agent_dir(tmp, "cpu,cpuacct", "a"),
            &[
                ("cgroup.procs", ""),
                ("tasks", ""),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.shares", "1024\n"),
                ("cpu.stat", "nr_periods 9\nnr_throttled 4\nthrottled_time 5000000\n"),
                ("cpuacct.usage", "123456789\n"),
            ],
        );
        on_mkdir(
            &agent_dir(tmp, "pids", "a"),
            &[("cgroup.procs", ""), ("tasks", ""), ("pids.max", "max\n"), ("pids.current", "3\n")],
        );
        on_mkdir(
            &agent_dir(tmp, "freezer", "a"),
            &[("cgroup.procs", ""), ("tasks", ""), ("freezer.state", "THAWED\n")],
        );
        let mounts = ["memory", "cpu,cpuacct", "pids", "freezer"];
        for mount in mounts {
            std::fs::create_dir(tmp.join(mount)).unwrap();
        }
        CgroupRoot::v1([
            (Controller::Memory, tmp.join("memory")),
            (Controller::Cpu, tmp.join("cpu,cpuacct")),
            (Controller::Cpuacct, tmp.join("cpu,cpuacct")),
            (Controller::Pids, tmp.join("pids")),
            (Controller::Freezer, tmp.join("freezer")),
        ])
    }

    const LIMITS: CgroupLimits = CgroupLimits {
        memory_bytes: Some(50 << 20),
        cpu_quota_us: Some(10_000),
        cpu_period_us: None,
        cpu_shares: Some(512),
        pids_max: Some(8),
    };

    #[test]
    fn limits_land_in_the_right_files_and_remove_cleans_up() {
        let tmp = TempDir::new("v1");
        let root = fake_root(&tmp.0, true);
        assert_eq!(root.mode(), CgroupMode::Legacy);
        let mut cg = root.create("a", &LIMITS).unwrap();
        let dir = |mount: &str| agent_dir(&tmp.0, mount, "a");
        assert_eq!(cg.paths().len(), 4, "cpu and cpuacct share one directory: {:?}", cg.paths());
        assert_eq!(content(&dir("memory"), "memory.limit_in_bytes"), "52428800");
        assert_eq!(content(&dir("memory"), "memory.memsw.limit_in_bytes"), "52428800");
        assert_eq!(content(&dir("cpu,cpuacct"), "cpu.cfs_period_us"), "100000");
        assert_eq!(content(&dir("cpu,cpuacct"), "cpu.cfs_quota_us"), "10000");
        assert_eq!(content(&dir("cpu,cpuacct"), "cpu.shares"), "512");
        assert_eq!(content(&dir("pids"), "pids.max"), "8");

        // A new process writes itself into `tasks` (the fake kernel lists it in `cgroup.procs`).
        let joins: Vec<_> = cg.join_files().iter().map(|f| f.to_str().unwrap().to_owned()).collect();
        let tasks: Vec<_> = cg.paths().iter().map(|p| p.join("tasks").to_str().unwrap().to_owned()).collect();
        assert_eq!(joins, tasks);
        for path in cg.paths() {
            std::fs::write(path.join("cgroup.procs"), "4242").unwrap();
        }
        // A thread alone (a VM's vCPU) goes in through `tasks`, in every hierarchy.
        cg.add_thread(4243).unwrap();
        for path in cg.paths() {
            assert_eq!(content(path, "tasks"), "4243");
        }
        assert_eq!(cg.pids().unwrap(), vec![4242]);
        for path in cg.paths() {
            std::fs::write(path.join("cgroup.procs"), "").unwrap();
        }
        cg.remove().unwrap();
        for mount in ["memory", "cpu,cpuacct", "pids", "freezer"] {
            assert!(!dir(mount).exists(), "{mount}");
            assert!(tmp.0.join(mount).join(PARENT).is_dir(), "the shared parent stays");
        }
    }

    #[test]
    fn unlimited_keeps_the_kernels_defaults_and_memsw_is_optional() {
        let tmp = TempDir::new("v1-defaults");
        let root = fake_root(&tmp.0, false);
        let mut cg = root.create("a", &CgroupLimits::default()).unwrap();
        let dir = |mount: &str| agent_dir(&tmp.0, mount, "a");
        // Nothing is written into a fresh cgroup: what the fake kernel made is left as it was.
        assert_eq!(content(&dir("memory"), "memory.limit_in_bytes"), "9223372036854771712");
        assert_eq!(content(&dir("cpu,cpuacct"), "cpu.cfs_quota_us"), "-1");
        assert_eq!(content(&dir("cpu,cpuacct"), "cpu.shares"), "1024");
        assert_eq!(content(&dir("pids"), "pids.max"), "max");
        cg.remove().unwrap();

        let memory_only = CgroupLimits { memory_bytes: Some(1 << 20), ..CgroupLimits::default() };
        let _cg = root.create("a", &memory_only).unwrap();
        assert_eq!(content(&dir("memory"), "memory.limit_in_bytes"), "1048576");
        assert!(!dir("memory").join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn stats_freeze_and_thaw() {
        let tmp = TempDir::new("v1-stats");
        let cg = fake_root(&tmp.0, true).create("a", &LIMITS).unwrap();
        let stats = cg.stats().unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_us: Some(123_456),
                cpu_throttled_us: Some(5_000),
                nr_throttled: Some(4),
                memory_current: Some(4096),
                memory_peak: Some(8192),
                pids_current: Some(3),
                oom_kills: Some(2),
            }
        );
        assert_eq!(cg.oom_kills().unwrap(), 2);
        cg.freeze().unwrap();
        assert_eq!(content(&agent_dir(&tmp.0, "freezer", "a"), "freezer.state"), "FROZEN");
        cg.thaw().unwrap();
        assert_eq!(content(&agent_dir(&tmp.0, "freezer", "a"), "freezer.state"), "THAWED");
    }

    #[test]
    fn missing_controllers_are_named() {
        let tmp = TempDir::new("v1-missing");
        let root = CgroupRoot::v1([(Controller::Cpu, tmp.0.join("cpu"))]);
        let limits = CgroupLimits { memory_bytes: Some(1 << 20), pids_max: Some(8), ..CgroupLimits::default() };
        let err = root.create("a", &limits).unwrap_err();
        assert!(err.to_string().starts_with("cgroup controllers missing: memory, pids, freezer"), "{err}");
        assert!(!tmp.0.join("cpu").exists(), "nothing is created before the check");
    }

    #[test]
    fn leftovers_are_replaced_fresh_unless_alive() {
        let tmp = TempDir::new("v1-leftover");
        let root = fake_root(&tmp.0, true);
        // A crash left `a` behind in one hierarchy, with a stale OOM count.
        populate(&agent_dir(&tmp.0, "memory", "a"), &[("cgroup.procs", ""), ("memory.oom_control", "oom_kill 5\n")]);
        let cg = root.create("a", &LIMITS).unwrap();
        assert_eq!(cg.stats().unwrap().oom_kills, Some(2), "the fake kernel's fresh count, not the stale 5");
        drop(cg);

        // Another live agent is called `b`: refused, and nothing made for this attempt is left behind.
        populate(&agent_dir(&tmp.0, "pids", "b"), &[("cgroup.procs", "77\n")]);
        let err = root.create("b", &LIMITS).unwrap_err();
        assert_eq!(err.to_string(), format!("cgroup {} still has processes", agent_dir(&tmp.0, "pids", "b").display()));
        assert!(!agent_dir(&tmp.0, "memory", "b").exists());
        assert_eq!(content(&agent_dir(&tmp.0, "pids", "b"), "cgroup.procs"), "77");
    }

    #[test]
    fn a_failed_create_cleans_up() {
        let tmp = TempDir::new("v1-failed");
        let root = fake_root(&tmp.0, true);
        // This fake kernel lacks cpu.shares in `c`'s cpu directory, so writing the limits fails...
        on_mkdir(
            &agent_dir(&tmp.0, "memory", "c"),
            &[("memory.limit_in_bytes", ""), ("memory.memsw.limit_in_bytes", "")],
        );
        on_mkdir(&agent_dir(&tmp.0, "cpu,cpuacct", "c"), &[("cpu.cfs_period_us", ""), ("cpu.cfs_quota_us", "")]);
        let err = root.create("c", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("cpu,cpuacct/clove/c/cpu.shares"), "{err}");
        // ...and every directory it made is gone again, while the shared parents stay.
        for mount in ["memory", "cpu,cpuacct", "pids", "freezer"] {
            assert!(!agent_dir(&tmp.0, mount, "c").exists(), "{mount}");
            assert!(tmp.0.join(mount).join(PARENT).is_dir(), "{mount}");
        }
    }

    #[test]
    fn names_are_checked() {
        let root = CgroupRoot::v1([]);
        for bad in ["", "..", "a/b", "a b", "x.y", &"n".repeat(65)] {
            assert!(matches!(root.create(bad, &CgroupLimits::default()), Err(CgroupError::InvalidName(_))), "{bad}");
        }
    }
}
