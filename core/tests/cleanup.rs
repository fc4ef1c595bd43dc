//! Nothing left behind: a thousand spawn/kill cycles leave no cgroup, mount, descriptor, zombie or
//! temporary directory, and the runtime's agents die with it.

mod common;

use std::time::Duration;

use clove_core::protocol::Limits;
use clove_core::runtime::{AgentStdio, Runtime, RuntimeConfig, SpawnSpec};

/// What the host could leak, counted.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    fds: usize,
    zombies: usize,
    mounts: usize,
    cgroups: usize,
    temp_dirs: usize,
}

fn footprint() -> Footprint {
    let me = std::process::id();
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split_whitespace().collect();
            fields.first() == Some(&"Z") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
        })
        .count();
    let prefix = format!("agent-{me}-");
    let cgroups = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/freezer",
    ]
    .iter()
    .filter_map(|root| std::fs::read_dir(format!("{root}/clove")).ok())
    .flatten()
    .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
    .count();
    let temp_prefix = format!("clove-{me}-");
    Footprint {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        zombies,
        mounts: std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count(),
        cgroups,
        temp_dirs: std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&temp_prefix)))
            .count(),
    }
}

#[test]
fn a_thousand_spawn_kill_cycles_leave_nothing() {
    let before = footprint();
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let sandboxed = common::is_root();
    if !sandboxed {
        eprintln!("SKIPPED: the sandboxed half of a_thousand_spawn_kill_cycles_leave_nothing needs root");
    }
    for i in 0..1000 {
        let mut spec = SpawnSpec::new(format!("cycle-{i}"), vec!["sleep".into(), "30".into()]);
        spec.stdio = AgentStdio::Null;
        if sandboxed && i % 2 == 1 {
            spec.sandboxed = true;
            spec.limits = Limits { memory: Some(32 << 20), max_pids: Some(8), ..Limits::default() };
        }
        let id = rt.spawn(spec).unwrap();
        rt.kill(id).unwrap();
        rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    }
    drop(rt);
    let after = footprint();
    assert_eq!(after, before);
}
