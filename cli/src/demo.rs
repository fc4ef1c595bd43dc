//! `clove-run demo`: the main job. Python agents at different levels share one runtime; each
//! reports what it tried, and the table shows what the policy decided: file and exec denials,
//! limits (an OOM-killed hog, a throttled spinner, a restarted crasher), three agents sharing the
//! LLM through the fair queue (answered by the host when no LLM is configured), an IPC ping-pong by
//! name and a state counter. The demo checks its own outcome: it fails if the policy allowed what
//! it must deny, or denied what it must allow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clove_core::policy::Level;
use clove_core::protocol::{AuditQuery, Limits, RestartPolicy, RestartSpec};
use clove_core::runtime::{
    AgentId, AgentStdio, EventKind, ProviderConfig, Runtime, RuntimeConfig, SpawnSpec, ThinkAnswer, ThinkCall,
    ThinkHandler,
};

/// The agent SDK, every module of it (listed by `build.rs`), carried inside the binary so the demo
/// runs from anywhere.
const SDK_FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The demo agents.
const AGENT_FILES: &[(&str, &str)] = &[
    ("agents/_demo.py", include_str!("../demo/_demo.py")),
    ("agents/echo_agent.py", include_str!("../demo/echo_agent.py")),
    ("agents/snoop_agent.py", include_str!("../demo/snoop_agent.py")),
    ("agents/scribe_agent.py", include_str!("../demo/scribe_agent.py")),
    ("agents/operator_agent.py", include_str!("../demo/operator_agent.py")),
    ("agents/crasher_agent.py", include_str!("../demo/crasher_agent.py")),
    ("agents/hog_agent.py", include_str!("../demo/hog_agent.py")),
    ("agents/spinner_agent.py", include_str!("../demo/spinner_agent.py")),
    ("agents/ping_agent.py", include_str!("../demo/ping_agent.py")),
    ("agents/pong_agent.py", include_str!("../demo/pong_agent.py")),
    ("agents/thinker_agent.py", include_str!("../demo/thinker_agent.py")),
    ("agents/counter_agent.py", include_str!("../demo/counter_agent.py")),
];

struct DemoAgent {
    name: &'static str,
    script: &'static str,
    level: Level,
    restart: RestartSpec,
    limits: Limits,
    /// (action prefix, the decision it must get)
    expect: &'static [(&'static str, &'static str)],
    /// What the host must see happen to it, in its lifecycle events.
    expect_lifecycle: Option<&'static str>,
}

fn agents() -> Vec<DemoAgent> {
    let never = RestartSpec::default();
    vec![
        DemoAgent {
            name: "echo",
            script: "echo_agent.py",
            level: Level::Standard,
            restart: never.clone(),
            limits: Limits::default(),
            expect: &[("NOOP x", "allowed")],
            expect_lifecycle: None,
        },
        DemoAgent {
            name: "snoop",
            script: "snoop_agent.py",
            level: Level::Standard,
            restart: never.clone(),
            limits: Limits::default(),
            expect_lifecycle: None,
            expect: &[
                ("READ /etc/shadow", "denied"),
                ("READ /tmp/../etc/shadow", "denied"),
                ("EXEC", "denied"),
                ("SET_PERMS", "denied"),
                ("READ /etc/hostname", "allowed"),
            ],
        },
        DemoAgent {
            name: "scribe",
            script: "scribe_agent.py",
            level: Level::Sandboxed,
            restart: never.clone(),
            limits: Limits::default(),
            expect: &[("WRITE 1024", "allowed"), ("READ it back", "allowed"), ("WRITE /etc", "denied")],
            expect_lifecycle: None,
        },
        DemoAgent {
            name: "operator",
            script: "operator_agent.py",
            level: Level::Unrestricted,
            restart: never,
            limits: Limits::default(),
            expect: &[("EXEC", "allowed"), ("SPAWN", "allowed"), ("KILL", "allowed")],
            expect_lifecycle: None,
        },
        DemoAgent {
            name: "crasher",
            script: "crasher_agent.py",
            level: Level::Standard,
            restart: RestartSpec { policy: RestartPolicy::OnFailure, max_restarts: 2, window_s: 60 },
            limits: Limits::default(),
            expect: &[("divide by zero", "crash")],
            expect_lifecycle: Some("escalated"),
        },
        DemoAgent {
            name: "hog",
            script: "hog_agent.py",
            level: Level::Standard,
            restart: RestartSpec::default(),
            limits: Limits { memory: Some(50 << 20), max_pids: Some(16), ..Limits::default() },
            expect: &[("allocate", "started")],
            expect_lifecycle: Some("OOM-killed"),
        },
        DemoAgent {
            name: "spinner",
            script: "spinner_agent.py",
            level: Level::Standard,
            restart: RestartSpec::default(),
            limits: Limits { cpu_quota: Some(10_000), cpu_period: Some(100_000), ..Limits::default() },
            expect: &[("busy loop", "throttled")],
            expect_lifecycle: None,
        },
        DemoAgent {
            name: "ping",
            script: "ping_agent.py",
            level: Level::Minimal,
            restart: RestartSpec::default(),
            limits: Limits::default(),
            expect: &[("IPC ping-pong", "allowed")],
            expect_lifecycle: None,
        },
        thinker("thinker-1", &[("THINK x3 (thinker-1)", "allowed")]),
        thinker("thinker-2", &[("THINK x3 (thinker-2)", "allowed")]),
        thinker("thinker-3", &[("THINK x3 (thinker-3)", "allowed")]),
        DemoAgent {
            name: "counter",
            script: "counter_agent.py",
            level: Level::Standard,
            restart: RestartSpec::default(),
            limits: Limits::default(),
            expect: &[("STATE counter", "allowed"), ("STATE ttl=1", "allowed")],
            expect_lifecycle: None,
        },
        DemoAgent {
            name: "pong",
            script: "pong_agent.py",
            level: Level::Minimal,
            restart: RestartSpec::default(),
            limits: Limits::default(),
            expect: &[("REGISTER pong", "allowed"), ("answered balls", "allowed")],
            expect_lifecycle: None,
        },
    ]
}

/// One of the agents that share the LLM.
fn thinker(name: &'static str, expect: &'static [(&'static str, &'static str)]) -> DemoAgent {
    DemoAgent {
        name,
        script: "thinker_agent.py",
        level: Level::Standard,
        restart: RestartSpec::default(),
        limits: Limits::default(),
        expect,
        expect_lifecycle: None,
    }
}

/// Without an LLM configured (OPENAI_API_KEY, GEMINI_API_KEY, ANTHROPIC_API_KEY, ...), the demo
/// host answers THINK itself, and says so in every answer.
fn demo_think_handler() -> ThinkHandler {
    Arc::new(|call: &ThinkCall| {
        let primes = [2, 3, 5, 7, 11, 13, 17, 19, 23];
        let sum: usize = call.prompt.bytes().map(usize::from).sum();
        let pick = primes[sum % primes.len()];
        Ok(ThinkAnswer {
            text: format!("{pick} (from the demo host: no LLM is configured)"),
            model: "clove-demo-host".into(),
            input_tokens: call.prompt.len().div_ceil(4) as u64,
            output_tokens: 8,
        })
    })
}

/// One reported action.
struct Row {
    agent: String,
    level: String,
    action: String,
    decision: String,
    detail: String,
}

pub fn run() -> Result<ExitCode> {
    let dir = PathBuf::from(format!("/tmp/clove-demo-{}", std::process::id()));
    let result = run_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path) -> Result<ExitCode> {
    for (path, text) in SDK_FILES.iter().chain(AGENT_FILES) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(dir.join("logs"))?;

    let plan = agents();
    println!(
        "Clove demo: one runtime inside this process, {} Python agents at different levels and limits.\n",
        plan.len()
    );
    let runtime = Runtime::start(RuntimeConfig::default())?;
    let llm = ProviderConfig::from_env();
    match &llm {
        Some(provider) => println!("THINK goes to {:?} ({}).\n", provider.kind, provider.model),
        None => {
            println!("No LLM is configured: the demo host answers THINK itself (labelled in each answer).\n");
            runtime.set_think_handler(Some(demo_think_handler()))?;
        }
    }
    let mut ids: BTreeMap<AgentId, &DemoAgent> = BTreeMap::new();
    let mut skipped = Vec::new();
    for agent in &plan {
        let script = dir.join("agents").join(agent.script).display().to_string();
        let mut spec = SpawnSpec::new(agent.name, vec!["python3".into(), script]);
        spec.level = agent.level;
        spec.restart = agent.restart.clone();
        spec.limits = agent.limits.clone();
        spec.cwd = Some(work.clone());
        spec.stdio = AgentStdio::File(dir.join("logs").join(format!("{}.log", agent.name)));
        spec.env = vec![
            ("PYTHONPATH".into(), dir.join("sdk").display().to_string()),
            ("CLOVE_DEMO_WORK".into(), work.display().to_string()),
            ("CLOVE_DEMO_NAME".into(), agent.name.to_string()),
        ];
        match runtime.spawn(spec) {
            Ok(id) => {
                ids.insert(id, agent);
            }
            // Limits that this machine cannot enforce are refused, never silently dropped.
            Err(e) if agent.limits != Limits::default() => {
                println!("SKIPPED: agent {} needs cgroups to enforce its limits here: {e}", agent.name);
                skipped.push(agent.name);
            }
            Err(e) => return Err(e).with_context(|| format!("starting agent {} (is python3 installed?)", agent.name)),
        }
    }

    let lifecycle = follow_until_settled(&runtime, &ids)?;
    let mut rows = Vec::new();
    for agent in plan.iter().filter(|a| !skipped.contains(&a.name)) {
        rows.extend(read_reports(&dir.join("logs").join(format!("{}.log", agent.name)), agent));
    }
    print_table(&rows);

    println!("\nLifecycle, as the host saw it through events:");
    for (id, agent) in &ids {
        println!("  {:<9} {}", agent.name, lifecycle.get(id).map(String::as_str).unwrap_or("-"));
    }
    let denials =
        runtime.audit_log(AuditQuery { category: Some("security".into()), limit: 1000, ..Default::default() })?;
    println!("\nAudit log: {} denials recorded, e.g.", denials.len());
    for entry in denials.iter().take(3) {
        println!("  #{:<3} {:<9} {:<9} {}", entry.id, entry.agent_name, entry.event, entry.details_json);
    }

    let stories: BTreeMap<&str, &str> =
        ids.iter().map(|(id, agent)| (agent.name, lifecycle.get(id).map(String::as_str).unwrap_or(""))).collect();
    let failures = check(plan.iter().filter(|a| !skipped.contains(&a.name)), &rows, &stories);
    if failures.is_empty() {
        println!("\nEvery decision was the expected one.");
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &failures {
            eprintln!("unexpected: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Collects lifecycle events until every agent has ended for good (the crasher escalates).
fn follow_until_settled(runtime: &Runtime, ids: &BTreeMap<AgentId, &DemoAgent>) -> Result<BTreeMap<AgentId, String>> {
    let mut story: BTreeMap<AgentId, Vec<String>> = BTreeMap::new();
    let mut settled: BTreeMap<AgentId, bool> = ids.keys().map(|id| (*id, false)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while settled.values().any(|done| !done) {
        let left =
            deadline.checked_duration_since(Instant::now()).context("the demo agents did not finish within 60 s")?;
        let Some(event) = runtime.next_event(Some(left)) else {
            continue;
        };
        let restarts = ids.get(&event.agent_id).is_some_and(|a| a.restart.policy != RestartPolicy::Never);
        let line = match &event.kind {
            EventKind::Spawned { pid } => format!("spawned (pid {pid})"),
            EventKind::Exited(exit) => match (exit.code, exit.signal) {
                (Some(code), _) => format!("exited {code}"),
                (_, Some(signal)) => format!("killed by signal {signal}"),
                _ => "exited".into(),
            },
            EventKind::Restarting { attempt, delay_ms } => {
                format!("restart #{attempt} in {:.0} s", *delay_ms as f64 / 1000.0)
            }
            EventKind::Escalated => "escalated: no more restarts".into(),
            EventKind::Oom => "OOM-killed (memory limit)".into(),
            EventKind::Paused => "paused".into(),
            EventKind::Resumed => "resumed".into(),
            EventKind::Bus(bus) => bus.event_type.to_lowercase(),
        };
        let done = match event.kind {
            EventKind::Exited(_) => !restarts,
            EventKind::Escalated => true,
            _ => false,
        };
        if let Some(flag) = settled.get_mut(&event.agent_id) {
            *flag |= done;
        }
        story.entry(event.agent_id).or_default().push(line);
    }
    Ok(story.into_iter().map(|(id, lines)| (id, lines.join(" -> "))).collect())
}

fn read_reports(log: &Path, agent: &DemoAgent) -> Vec<Row> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut rows: Vec<Row> = text
        .lines()
        .filter_map(|line| line.strip_prefix("REPORT "))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .map(|v| Row {
            agent: agent.name.into(),
            level: agent.level.name().into(),
            action: v["action"].as_str().unwrap_or_default().into(),
            decision: v["decision"].as_str().unwrap_or_default().into(),
            detail: v["detail"].as_str().unwrap_or_default().into(),
        })
        .collect();
    // The crasher reports once per start; one row says it.
    rows.dedup_by(|a, b| a.action == b.action);
    if rows.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        rows.push(Row {
            agent: agent.name.into(),
            level: agent.level.name().into(),
            action: "(no report)".into(),
            decision: "failed".into(),
            detail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    rows
}

fn print_table(rows: &[Row]) {
    let width = |f: fn(&Row) -> &str, title: &str| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(title.len())
    };
    let (wa, wl, wx, wd) = (
        width(|r| &r.agent, "AGENT"),
        width(|r| &r.level, "LEVEL"),
        width(|r| &r.action, "ACTION"),
        width(|r| &r.decision, "DECISION"),
    );
    println!("{:<wa$}  {:<wl$}  {:<wx$}  {:<wd$}  DETAIL", "AGENT", "LEVEL", "ACTION", "DECISION");
    println!("{}", "-".repeat(wa + wl + wx + wd + 16));
    for r in rows {
        let decision = if r.decision == "denied" { "DENIED" } else { r.decision.as_str() };
        let detail: String = r.detail.chars().take(90).collect();
        println!("{:<wa$}  {:<wl$}  {:<wx$}  {:<wd$}  {detail}", r.agent, r.level, r.action, decision);
    }
}

/// Every expectation that the reports and the lifecycle events do not meet.
fn check<'a>(plan: impl Iterator<Item = &'a DemoAgent>, rows: &[Row], stories: &BTreeMap<&str, &str>) -> Vec<String> {
    let mut failures = Vec::new();
    for agent in plan {
        if let Some(expected) = agent.expect_lifecycle {
            let story = stories.get(agent.name).copied().unwrap_or_default();
            if !story.contains(expected) {
                failures.push(format!("{}: lifecycle '{story}' lacks '{expected}'", agent.name));
            }
        }
        for (prefix, decision) in agent.expect {
            let found = rows.iter().find(|r| r.agent == agent.name && r.action.starts_with(prefix));
            match found {
                Some(row) if row.decision == *decision => {}
                Some(row) => failures.push(format!(
                    "{}: {} was {} ({}), expected {decision}",
                    agent.name, row.action, row.decision, row.detail
                )),
                None => failures.push(format!("{}: no report of '{prefix}'", agent.name)),
            }
        }
    }
    failures
}
