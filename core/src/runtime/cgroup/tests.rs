//! Real cgroups on this machine, with real children: the OOM, the busy loop, the fork bomb, PAUSE. They need
//! root and the memory, cpu, pids and freezer controllers; without them each says SKIPPED and returns.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{AgentCgroup, CgroupLimits, CgroupRoot, Controller};

/// Says SKIPPED on the real stderr: `eprintln!` would be captured by the test harness and never shown for a
/// test that returns normally.
fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: cgroup::{test}: {reason}");
}

/// The root, or `None` after a loud SKIPPED line when this machine cannot run real cgroup tests.
fn real_root(test: &str) -> Option<CgroupRoot> {
    if clove_sys::current_uid() != 0 {
        skip(test, "not root");
        return None;
    }
    let root = match CgroupRoot::detect() {
        Ok(root) => root,
        Err(e) => {
            skip(test, &format!("no cgroups: {e}"));
            return None;
        }
    };
    let available = root.available().unwrap_or_default();
    let needed = [Controller::Memory, Controller::Cpu, Controller::Pids, Controller::Freezer];
    if let Some(missing) = needed.iter().find(|c| !available.contains(c)) {
        skip(test, &format!("no {} controller ({:?} cgroups)", missing.name(), root.mode()));
        return None;
    }
    Some(root)
}

fn name(tag: &str) -> String {
    format!("test-{}-{tag}", std::process::id())
}

const LIMITS: CgroupLimits = CgroupLimits {
    memory_bytes: Some(50 << 20),
    cpu_quota_us: Some(10_000),
    cpu_period_us: Some(100_000),
    cpu_shares: None,
    pids_max: Some(8),
};

/// A child killed and reaped on drop, so a failed assertion leaves no process keeping a cgroup busy.
struct Agent(Child);

impl Agent {
    /// Starts `argv` in `cg`, joined the way the runtime's children join: before the exec, through
    /// [`AgentCgroup::join_files`].
    fn start(cg: &AgentCgroup, argv: &[&str]) -> Agent {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        clove_sys::process::prepare_child(&mut cmd, cg.join_files());
        Agent(cmd.spawn().unwrap())
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 10 ms for up to `timeout`.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

/// What the kernel says about freezing, in whichever file this hierarchy has.
fn freezer_says(cg: &AgentCgroup) -> String {
    for dir in cg.paths() {
        if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
            return state.trim().to_string();
        }
        if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
            return events.lines().find(|l| l.starts_with("frozen")).unwrap_or("").to_string();
        }
    }
    String::new()
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn real_lifecycle_limits_freeze_remove() {
    let Some(root) = real_root("real_lifecycle_limits_freeze_remove") else { return };
    let mut cg = root.create(&name("life"), &LIMITS).unwrap();
    let paths = cg.paths().to_vec();
    for dir in &paths {
        assert!(dir.is_dir(), "{dir:?}");
    }
    let mut agent = Agent::start(&cg, &["sleep", "30"]);
    assert_eq!(cg.pids().unwrap(), vec![agent.0.id()]);
    assert!(cg.stats().unwrap().pids_current.unwrap() >= 1);

    cg.freeze().unwrap();
    let state = freezer_says(&cg);
    assert!(state == "FROZEN" || state == "frozen 1", "{state:?}");
    cg.thaw().unwrap();
    let state = freezer_says(&cg);
    assert!(state == "THAWED" || state == "frozen 0", "{state:?}");

    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    cg.remove().unwrap();
    for dir in &paths {
        assert!(!dir.exists(), "{dir:?} left behind");
        assert!(dir.parent().unwrap().is_dir(), "the shared clove parent stays");
    }
    cg.remove().unwrap();
}

#[test]
fn real_memory_hog_is_oom_killed() {
    let Some(root) = real_root("real_memory_hog_is_oom_killed") else { return };
    let cg = root.create(&name("oom"), &LIMITS).unwrap();
    let script = "chunks = []\nwhile True:\n    chunks.append(b'x' * (10 << 20))\n";
    let mut agent = Agent::start(&cg, &[python(), "-c", script]);
    let status = agent.wait_exit(Duration::from_secs(10)).expect("the memory hog is still running after 10 s");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let stats = cg.stats().unwrap();
    assert!(stats.oom_kills.unwrap() >= 1, "{stats:?}");
    assert!(cg.oom_kills().unwrap() >= 1);
    assert!(stats.memory_peak.unwrap() <= 50 << 20, "{stats:?}");
}

#[test]
fn real_busy_loop_is_throttled() {
    let Some(root) = real_root("real_busy_loop_is_throttled") else { return };
    let cg = root.create(&name("cpu"), &LIMITS).unwrap();
    let _agent = Agent::start(&cg, &["sh", "-c", "while :; do :; done"]);
    // Skip the start-up, then measure about 3 s of the loop against the wall clock.
    assert!(eventually(Duration::from_secs(2), || cg.stats().unwrap().cpu_usage_us.unwrap() > 0));
    let (start, used_before) = (Instant::now(), cg.stats().unwrap().cpu_usage_us.unwrap());
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = cg.stats().unwrap();
    let share = (stats.cpu_usage_us.unwrap() - used_before) as f64 / start.elapsed().as_micros() as f64;
    eprintln!("busy loop under a 10 % quota used {:.1} % of one cpu; {stats:?}", share * 100.0);
    assert!(share <= 0.12, "{share}");
    assert!(share >= 0.02, "the loop barely ran: {share}");
    assert!(stats.nr_throttled.unwrap() > 0, "{stats:?}");
}

#[test]
fn real_fork_bomb_stops_at_pids_max_and_kill_all_empties() {
    let Some(root) = real_root("real_fork_bomb_stops_at_pids_max_and_kill_all_empties") else { return };
    let mut cg = root.create(&name("pids"), &LIMITS).unwrap();
    let bomb = "i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; wait";
    let mut agent = Agent::start(&cg, &["sh", "-c", bomb]);
    // sh plus at most 7 children; sh may give up on the first failed fork.
    assert!(eventually(Duration::from_secs(3), || cg.pids().unwrap().len() >= 7), "{:?}", cg.pids());
    std::thread::sleep(Duration::from_millis(200));
    assert!(cg.pids().unwrap().len() <= 8, "{:?}", cg.pids());
    assert!(cg.stats().unwrap().pids_current.unwrap() <= 8);

    cg.kill_all().unwrap();
    assert_eq!(cg.pids().unwrap(), Vec::<u32>::new());
    let status = agent.wait_exit(Duration::from_secs(2)).expect("sh survived kill_all");
    assert!(status.signal() == Some(9) || status.code().is_some(), "{status:?}");
    cg.remove().unwrap();
    assert!(cg.paths().iter().all(|dir| !dir.exists()));
}

#[test]
fn real_kill_all_reaches_a_frozen_agent() {
    let Some(root) = real_root("real_kill_all_reaches_a_frozen_agent") else { return };
    let mut cg = root.create(&name("frozen-kill"), &CgroupLimits::default()).unwrap();
    let mut agent = Agent::start(&cg, &["sh", "-c", "sleep 30 & sleep 30 & wait"]);
    assert!(eventually(Duration::from_secs(2), || cg.pids().unwrap().len() == 3), "{:?}", cg.pids());
    cg.freeze().unwrap();
    cg.kill_all().unwrap();
    assert_eq!(agent.wait_exit(Duration::from_secs(2)).and_then(|s| s.signal()), Some(9));
    cg.remove().unwrap();
}

/// cgroup2's core files (freeze, kill) on a real cgroup2 mount: `/sys/fs/cgroup` on unified machines, the
/// controller-less `/sys/fs/cgroup/unified` on hybrid ones.
#[test]
fn real_v2_core_freeze_and_kill() {
    let test = "real_v2_core_freeze_and_kill";
    if clove_sys::current_uid() != 0 {
        skip(test, "not root");
        return;
    }
    let is_cgroup2 = |path: &str| {
        clove_sys::statfs::filesystem_magic(Path::new(path)).ok() == Some(clove_sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    let Some(mount) = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().find(|p| is_cgroup2(p)) else {
        skip(test, "no cgroup2 mount");
        return;
    };
    let mut cg = CgroupRoot::v2(mount).create(&name("v2"), &CgroupLimits::default()).unwrap();
    assert_eq!(cg.unified_dir(), Some(cg.paths()[0].as_path()));
    let mut agent = Agent::start(&cg, &["sh", "-c", "sleep 30 & wait"]);
    assert!(eventually(Duration::from_secs(2), || cg.pids().unwrap().len() == 2), "{:?}", cg.pids());
    assert!(cg.stats().unwrap().cpu_usage_us.is_some());
    cg.freeze().unwrap();
    assert_eq!(freezer_says(&cg), "frozen 1");
    cg.thaw().unwrap();
    assert_eq!(freezer_says(&cg), "frozen 0");
    cg.kill_all().unwrap();
    assert_eq!(agent.wait_exit(Duration::from_secs(2)).and_then(|s| s.signal()), Some(9));
    cg.remove().unwrap();
    assert!(!cg.paths()[0].exists());
}
