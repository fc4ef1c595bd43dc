//! What the runtime adds to the host's resident memory: VmRSS before `Runtime::start`, idle with a
//! listener, and with agents running. Agents are separate processes; only the runtime's own
//! bookkeeping for them (records, sockets, pidfds) counts here.

use std::path::Path;

use clove_core::runtime::{AgentStdio, ListenConfig, Runtime, RuntimeConfig, SpawnSpec};

use crate::Result;

/// Resident memory added by the runtime, in KiB relative to before it started.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub idle_kib: i64,
    pub agents: usize,
    pub with_agents_kib: i64,
    /// After the runtime was dropped: what it left behind (allocator caches, mostly).
    pub after_drop_kib: i64,
}

/// This process's resident set size, in KiB.
pub fn rss_kib() -> Result<i64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).ok_or("no VmRSS line in /proc/self/status")?;
    let kib = line.trim().trim_end_matches("kB").trim().parse::<i64>()?;
    Ok(kib)
}

/// Starts a runtime listening at `socket`, spawns `agents` agents running `sleep 60`, and drops it.
pub fn measure(socket: &Path, agents: usize) -> Result<Footprint> {
    let before = rss_kib()?;
    let runtime = Runtime::start(RuntimeConfig::default())?;
    runtime.listen(ListenConfig::new(socket))?;
    // One call through the command channel proves the reactor has settled into its poll loop.
    runtime.list()?;
    let idle = rss_kib()?;
    for n in 0..agents {
        let mut spec = SpawnSpec::new(format!("sleeper-{n}"), vec!["sleep".to_string(), "60".to_string()]);
        spec.stdio = AgentStdio::Null;
        runtime.spawn(spec)?;
    }
    let listed = runtime.list()?.len();
    if listed != agents {
        return Err(format!("{listed} agents listed after spawning {agents}").into());
    }
    let with_agents = rss_kib()?;
    drop(runtime);
    let after = rss_kib()?;
    Ok(Footprint {
        idle_kib: idle - before,
        agents,
        with_agents_kib: with_agents - before,
        after_drop_kib: after - before,
    })
}
