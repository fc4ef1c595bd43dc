//! Resource limits through real cgroups (root only): a memory hog is OOM-killed alone, a busy loop is
//! throttled, a fork bomb stops at its pids limit, pause freezes, and no cgroup is left behind.

mod common;

use std::time::{Duration, Instant};

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::{AgentId, AgentStdio, EventKind, Runtime, SpawnSpec};
use common::{eventually, Fixture};

/// The tests count this process's cgroups, so they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn limited(name: &str, argv: &[&str], limits: Limits) -> SpawnSpec {
    let mut spec = SpawnSpec::new(name, argv.iter().map(|s| s.to_string()).collect());
    spec.stdio = AgentStdio::Null;
    spec.limits = limits;
    spec
}

fn cgroup_of(c: &mut common::Client, id: AgentId) -> CgroupMetrics {
    c.call(Opcode::METRICS_CGROUP, &MetricsRequest { agent_id: Some(id.0) }).unwrap()
}

/// Directories of this runtime's agent cgroups that still exist.
fn leftover_cgroups() -> Vec<String> {
    let prefix = format!("agent-{}-", std::process::id());
    let mut left = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/freezer",
    ] {
        if let Ok(dir) = std::fs::read_dir(format!("{root}/clove")) {
            left.extend(dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(&prefix)));
        }
    }
    left
}

const HOG: &str = "import time\nchunks = []\nwhile True:\n    b = bytearray(10 << 20)\n    for i in range(0, len(b), 4096):\n        b[i] = 1\n    chunks.append(b)\n    time.sleep(0.05)\n";

#[test]
fn a_memory_hog_is_oom_killed_alone() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("a_memory_hog_is_oom_killed_alone") {
        return;
    }
    let fx = Fixture::new("oom", Level::Unrestricted);
    let mut sibling = fx.connect();
    let limits = Limits { memory: Some(50 << 20), max_pids: Some(8), ..Default::default() };
    let hog = fx.runtime.spawn(limited("hog", &["python3", "-c", HOG], limits)).unwrap();
    let exit = fx.runtime.wait(hog, Some(Duration::from_secs(30))).unwrap();
    assert_eq!((exit.signal, exit.oom_killed), (Some(9), true), "{exit:?}");
    assert_eq!(sibling.noop(b"still here"), b"still here");
    let mut kinds = Vec::new();
    while let Some(e) = fx.runtime.next_event(Some(Duration::from_millis(100))) {
        kinds.push(e.kind);
    }
    let oom_at = kinds.iter().position(|k| *k == EventKind::Oom).expect("an OOM event");
    assert!(matches!(kinds[oom_at + 1], EventKind::Exited(e) if e.oom_killed), "{kinds:?}");
    let audit = fx.runtime.audit_log(AuditQuery { category: Some("resource".into()), ..Default::default() }).unwrap();
    assert_eq!(audit.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["OOM_KILLED"]);
    drop(fx);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn a_busy_loop_is_throttled_and_pause_freezes_it() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("a_busy_loop_is_throttled_and_pause_freezes_it") {
        return;
    }
    let fx = Fixture::new("cpu", Level::Unrestricted);
    let mut c = fx.connect();
    let limits =
        Limits { cpu_quota: Some(10_000), cpu_period: Some(100_000), memory: Some(64 << 20), ..Default::default() };
    let spin = fx.runtime.spawn(limited("spin", &["sh", "-c", "while :; do :; done"], limits)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (t0, u0) = (Instant::now(), cgroup_of(&mut c, spin).cpu_usage_us);
    std::thread::sleep(Duration::from_secs(2));
    let (t1, u1) = (Instant::now(), cgroup_of(&mut c, spin).cpu_usage_us);
    let share = (u1 - u0) as f64 / (t1 - t0).as_micros() as f64;
    assert!(share <= 0.12, "a 10 % quota used {:.1} % of a CPU", share * 100.0);
    assert!(share > 0.02, "the loop barely ran: {:.1} %", share * 100.0);
    assert!(cgroup_of(&mut c, spin).nr_throttled > 0);

    fx.runtime.pause(spin).unwrap();
    let frozen = cgroup_of(&mut c, spin).cpu_usage_us;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cgroup_of(&mut c, spin).cpu_usage_us, frozen, "a paused agent used CPU");
    fx.runtime.resume(spin).unwrap();
    assert!(eventually(Duration::from_secs(3), || cgroup_of(&mut c, spin).cpu_usage_us > frozen));
    fx.runtime.kill(spin).unwrap();
    assert_eq!(fx.runtime.wait(spin, Some(Duration::from_secs(10))).unwrap().signal, Some(9));
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn a_fork_bomb_stops_at_its_pids_limit_and_nothing_is_left() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("a_fork_bomb_stops_at_its_pids_limit_and_nothing_is_left") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("clove-it-forks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report");
    let bomb = format!(
        "import os, time\ncreated = failed = 0\nfor _ in range(100):\n    try:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        created += 1\n    except OSError:\n        failed += 1\n        break\nopen({:?}, 'w').write(f'{{created}} {{failed}}')\ntime.sleep(60)\n",
        report.display().to_string()
    );
    let rt = Runtime::start(Default::default()).unwrap();
    let limits = Limits { max_pids: Some(8), ..Default::default() };
    let id = rt.spawn(limited("bomb", &["python3", "-c", &bomb], limits)).unwrap();
    assert!(eventually(Duration::from_secs(10), || report.exists()));
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&report).unwrap();
    let counts: Vec<u32> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert!(counts[0] <= 7 && counts[1] >= 1, "created {} failed {}", counts[0], counts[1]);
    rt.kill(id).unwrap();
    rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    drop(rt);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
    let _ = std::fs::remove_dir_all(&dir);
}
