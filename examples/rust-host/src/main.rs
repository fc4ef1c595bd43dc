//! A Rust host embeds Clove by linking clove-core: start the runtime, spawn two sandboxed Python
//! agents, watch the memory hog get OOM-killed alone while its sibling keeps answering.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clove_core::protocol::Limits;
use clove_core::runtime::{AgentId, AgentStdio, EventKind, Runtime, RuntimeConfig, SpawnSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let agent = |name: &str, memory: Option<u64>| {
        let script = examples.join("agents").join(format!("{name}.py"));
        let mut spec = SpawnSpec::new(name, vec!["/usr/bin/python3".into(), script.display().to_string()]);
        spec.sandboxed = true;
        spec.stdio = AgentStdio::Null;
        spec.limits = Limits { memory, ..Limits::default() };
        let sdk = examples.join("../bindings/python");
        spec.env = vec![("PYTHONPATH".into(), sdk.display().to_string())];
        spec
    };

    let runtime = Runtime::start(RuntimeConfig::default())?;
    let hog = runtime.spawn(agent("hog", Some(50 << 20)))?;
    let steady = runtime.spawn(agent("steady", None))?;

    // Each agent's lifecycle as the host saw it, and when each one ended.
    let mut seen: BTreeMap<AgentId, Vec<String>> = BTreeMap::new();
    let mut ended: BTreeMap<AgentId, u64> = BTreeMap::new();
    while ended.len() < 2 {
        let event = runtime.next_event(Some(Duration::from_secs(30))).ok_or("no event within 30 s")?;
        let step = match &event.kind {
            EventKind::Spawned { .. } => "spawned".to_string(),
            EventKind::Oom => "oom".to_string(),
            EventKind::Exited(exit) => {
                ended.insert(event.agent_id, event.timestamp_ms);
                // A sandboxed program killed by signal s ends its sandbox with code 128 + s, as shells say.
                let how = match (exit.code, exit.signal) {
                    (Some(code), _) => format!("code {code}"),
                    (None, signal) => format!("signal {}", signal.unwrap_or(0)),
                };
                format!("exited ({how}{})", if exit.oom_killed { ", oom-killed" } else { "" })
            }
            other => other.name().to_lowercase(),
        };
        seen.entry(event.agent_id).or_default().push(step);
    }
    for (name, id) in [("hog", hog), ("steady", steady)] {
        println!("{name}: {}", seen[&id].join(" -> "));
    }
    let steady_ok = runtime.wait(steady, Some(Duration::from_secs(5)))?.code == Some(0);
    if steady_ok && runtime.wait(hog, Some(Duration::from_secs(5)))?.oom_killed && ended[&hog] <= ended[&steady] {
        println!("the hog was killed alone while steady kept answering");
    }
    runtime.shutdown();
    Ok(())
}
