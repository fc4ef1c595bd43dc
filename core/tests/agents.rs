//! Agents through the host API and through syscalls: lifecycle, exec, files and the policy gate.

mod common;

use std::time::{Duration, Instant};

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::{AgentId, AgentStdio, EventKind, Runtime, RuntimeConfig, SpawnSpec};
use common::{eventually, pids_running, Fixture};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn quiet(name: &str, words: &[&str]) -> SpawnSpec {
    let mut spec = SpawnSpec::new(name, argv(words));
    spec.stdio = AgentStdio::Null;
    spec
}

#[test]
fn exit_codes_signals_and_events() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let id = rt.spawn(quiet("exiter", &["sh", "-c", "exit 42"])).unwrap();
    let exit = rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    assert_eq!(exit, ExitInfo { code: Some(42), signal: None, oom_killed: false });
    let mut kinds = Vec::new();
    while let Some(event) = rt.next_event(Some(Duration::from_millis(200))) {
        assert_eq!(event.agent_id, id);
        kinds.push(event.kind);
    }
    assert!(matches!(kinds[0], EventKind::Spawned { .. }), "{kinds:?}");
    assert_eq!(kinds[1], EventKind::Exited(exit));

    let sleeper = rt.spawn(quiet("sleeper", &["sleep", "30"])).unwrap();
    let info = rt.list().unwrap().into_iter().find(|a| a.id == sleeper.0).unwrap();
    assert_eq!((info.name.as_str(), info.state, info.level), ("sleeper", AgentState::Running, Some(Level::Standard)));
    assert!(matches!(rt.wait(sleeper, Some(Duration::from_millis(100))), Err(e) if e.code() == ErrorCode::Timeout));

    rt.pause(sleeper).unwrap();
    let state = || {
        std::fs::read_to_string(format!("/proc/{}/stat", info.pid)).unwrap().split(") ").nth(1).unwrap().chars().next()
    };
    assert!(eventually(Duration::from_secs(5), || state() == Some('T')), "not stopped: {:?}", state());
    rt.resume(sleeper).unwrap();
    rt.kill(sleeper).unwrap();
    assert_eq!(rt.wait(sleeper, Some(Duration::from_secs(10))).unwrap().signal, Some(9));
    // Killing an agent that already ended succeeds: the goal holds.
    rt.kill(sleeper).unwrap();
}

#[test]
fn a_stale_id_is_not_found_and_never_another_agent() {
    let config = RuntimeConfig { exited_retention: 0, ..RuntimeConfig::default() };
    let rt = Runtime::start(config).unwrap();
    // With no retention an ended agent is forgotten at once.
    let first = rt.spawn(quiet("first", &["true"])).unwrap();
    assert!(eventually(Duration::from_secs(5), || rt.list().unwrap().is_empty()));
    // The slot is reused by the next agent; the old id still finds nothing.
    let second = rt.spawn(quiet("second", &["sleep", "30"])).unwrap();
    assert_eq!(second.0 & 0xFFFF_FFFF, first.0 & 0xFFFF_FFFF);
    for result in [rt.kill(first), rt.pause(first), rt.wait(first, None).map(drop)] {
        assert_eq!(result.unwrap_err().code(), ErrorCode::NotFound);
    }
    assert_eq!(rt.kill(AgentId(0xDEAD_0000_0000)).unwrap_err().code(), ErrorCode::NotFound);
    assert!(rt.list().unwrap().iter().any(|a| a.id == second.0 && a.state == AgentState::Running));
}

#[test]
fn spawn_failures_are_clear() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let err = rt.spawn(quiet("ghost", &["/nonexistent/program"])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains("/nonexistent/program"), "{err}");
    assert_eq!(rt.spawn(quiet("empty", &[])).unwrap_err().code(), ErrorCode::InvalidArgument);
    assert!(rt.list().unwrap().is_empty());
}

#[test]
fn exec_timeout_kills_the_whole_group_in_time() {
    let fx = Fixture::new("exec-timeout", Level::Unrestricted);
    let mut c = fx.connect();
    let started = Instant::now();
    // The shell starts a grandchild; the timeout must take both.
    let req = ExecRequest {
        command: Some("sleep 5.4321 & sleep 5.4321; wait".into()),
        timeout_ms: Some(1000),
        ..Default::default()
    };
    let err = c.call::<_, ExecReply>(Opcode::EXEC, &req).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code, ErrorCode::Timeout as u16, "{}", err.message);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        eventually(Duration::from_secs(2), || pids_running(&["sleep", "5.4321"]).is_empty()),
        "sleep survived the timeout"
    );
}

#[test]
fn exec_output_exit_codes_stdin_and_caps() {
    let fx = Fixture::new("exec", Level::Unrestricted);
    let mut c = fx.connect();
    let req = ExecRequest {
        argv: argv(&["sh", "-c", "cat; echo err >&2; exit 3"]),
        stdin: b"in\n".to_vec(),
        ..Default::default()
    };
    let reply: ExecReply = c.call(Opcode::EXEC, &req).unwrap();
    assert_eq!(
        (reply.exit_code, reply.stdout.as_slice(), reply.stderr.as_slice()),
        (Some(3), &b"in\n"[..], &b"err\n"[..])
    );
    assert!(!reply.truncated);

    let req = ExecRequest {
        argv: argv(&["head", "-c", "100000", "/dev/zero"]),
        max_output: Some(1000),
        ..Default::default()
    };
    let reply: ExecReply = c.call(Opcode::EXEC, &req).unwrap();
    assert_eq!((reply.stdout.len(), reply.truncated, reply.exit_code), (1000, true, Some(0)));

    // No shell unless the policy allows it, and then only through /bin/sh -c, never by concatenation.
    let reply: ExecReply = c
        .call(Opcode::EXEC, &ExecRequest { command: Some("echo 'a;b' | tr ';' '-'".into()), ..Default::default() })
        .unwrap();
    assert_eq!(reply.stdout, b"a-b\n");
    let err = c
        .call::<_, ExecReply>(Opcode::EXEC, &ExecRequest { argv: argv(&["/nonexistent"]), ..Default::default() })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound as u16, "{}", err.message);
}

#[test]
fn async_exec_is_delivered_once() {
    let fx = Fixture::new("async", Level::Unrestricted);
    let mut c = fx.connect();
    let accepted: Accepted = c
        .call(
            Opcode::EXEC,
            &ExecRequest { command: Some("echo async-ok".into()), run_async: true, ..Default::default() },
        )
        .unwrap();
    let results = c.await_async(Duration::from_secs(5));
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].request_id, results[0].opcode), (accepted.request_id, Opcode::EXEC as u8));
    let exec: ExecReply = decode(&results[0].payload).unwrap();
    assert_eq!((exec.stdout.as_slice(), exec.exit_code), (&b"async-ok\n"[..], Some(0)));
    assert!(c.poll_async().is_empty());
}

#[test]
fn standard_level_denials_are_audited() {
    let fx = Fixture::new("standard", Level::Standard);
    let mut c = fx.connect();
    let err = c
        .call::<_, ReadReply>(Opcode::READ, &ReadRequest { path: "/etc/shadow".into(), ..Default::default() })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains("/etc/shadow"), "{}", err.message);
    let err = c
        .call::<_, ReadReply>(Opcode::READ, &ReadRequest { path: "/tmp/../etc/shadow".into(), ..Default::default() })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    let err = c
        .call::<_, ExecReply>(Opcode::EXEC, &ExecRequest { command: Some("echo hi".into()), ..Default::default() })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);

    let path = fx.dir.join("note.txt").display().to_string();
    let wrote: WriteReply =
        c.call(Opcode::WRITE, &WriteRequest { path: path.clone(), content: vec![0, 1, 255], append: false }).unwrap();
    assert_eq!(wrote.bytes_written, 3);
    let read: ReadReply = c.call(Opcode::READ, &ReadRequest { path, ..Default::default() }).unwrap();
    assert_eq!(read.content, [0, 1, 255]);

    let log: AuditLogReply =
        c.call(Opcode::GET_AUDIT_LOG, &AuditQuery { category: Some("security".into()), ..Default::default() }).unwrap();
    let events: Vec<&str> = log.entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["READ", "READ", "EXEC"]);
    assert!(log.entries.iter().all(|e| !e.success));
}

#[test]
fn no_self_escalation_and_no_control_without_rights() {
    let fx = Fixture::new("escalate", Level::Standard);
    let mut c = fx.connect();
    let err = c
        .call::<_, PermsReply>(
            Opcode::SET_PERMS,
            &SetPermsRequest { level: Some(Level::Unrestricted), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);
    let err = c
        .call::<_, PermsReply>(
            Opcode::SET_PERMS,
            &SetPermsRequest { permissions_json: Some(r#"{"exec":["ls"]}"#.into()), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);

    // Lower, then raise again up to the ceiling.
    let lowered: PermsReply =
        c.call(Opcode::SET_PERMS, &SetPermsRequest { level: Some(Level::Minimal), ..Default::default() }).unwrap();
    assert_eq!((lowered.level, lowered.ceiling), (Some(Level::Minimal), Some(Level::Standard)));
    assert!(c
        .call::<_, ReadReply>(Opcode::READ, &ReadRequest { path: "/etc/hostname".into(), ..Default::default() })
        .is_err());
    let raised: PermsReply =
        c.call(Opcode::SET_PERMS, &SetPermsRequest { level: Some(Level::Standard), ..Default::default() }).unwrap();
    assert_eq!(raised.level, Some(Level::Standard));

    // Another agent, not its descendant: no kill, no pause, no permission change.
    let victim = fx.runtime.spawn(quiet("victim", &["sleep", "30"])).unwrap();
    for op in [Opcode::KILL, Opcode::PAUSE, Opcode::RESUME] {
        let err = c.call::<_, ControlReply>(op, &ControlRequest { target: Target::Id(victim.0) }).unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);
    }
    let err = c
        .call::<_, PermsReply>(
            Opcode::SET_PERMS,
            &SetPermsRequest { agent_id: Some(victim.0), level: Some(Level::Minimal), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(fx.runtime.list().unwrap().iter().any(|a| a.id == victim.0 && a.state == AgentState::Running));
    let err = c
        .call::<_, SpawnReply>(
            Opcode::SPAWN,
            &SpawnRequest { name: "x".into(), argv: argv(&["true"]), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
}

#[test]
fn a_parent_spawns_controls_and_grants_its_children() {
    let fx = Fixture::new("parent", Level::Unrestricted);
    let mut c = fx.connect();
    let me: HelloReply = c.call(Opcode::HELLO, &Hello::default()).unwrap();
    let req = SpawnRequest {
        name: "kid".into(),
        argv: argv(&["sleep", "30"]),
        level: Some(Level::Sandboxed),
        ..Default::default()
    };
    let kid: SpawnReply = c.call(Opcode::SPAWN, &req).unwrap();
    let list: ListReply = c.call(Opcode::LIST, &()).unwrap();
    let info = list.agents.iter().find(|a| a.id == kid.id).unwrap();
    assert_eq!((info.parent, info.level, info.pid), (Some(me.agent_id), Some(Level::Sandboxed), kid.pid));

    // The same id works for every later call: one id space.
    let custom = r#"{"exec":["python3"],"filesystem":{"write":["/tmp/*"]}}"#;
    let granted: PermsReply = c
        .call(
            Opcode::SET_PERMS,
            &SetPermsRequest {
                agent_id: Some(kid.id),
                level: Some(Level::Standard),
                permissions_json: Some(custom.into()),
            },
        )
        .unwrap();
    assert_eq!(granted.level, None);
    let perms: serde_json::Value = serde_json::from_str(&granted.permissions_json).unwrap();
    assert_eq!(perms["can_exec"], true);
    assert_eq!(perms["exec"], serde_json::json!(["python3"]));

    let paused: ControlReply = c.call(Opcode::PAUSE, &ControlRequest { target: Target::Name("kid".into()) }).unwrap();
    assert_eq!(paused.agent_id, kid.id);
    c.call::<_, ControlReply>(Opcode::RESUME, &ControlRequest { target: Target::Id(kid.id) }).unwrap();
    c.call::<_, ControlReply>(Opcode::KILL, &ControlRequest { target: Target::Id(kid.id) }).unwrap();
    assert_eq!(fx.runtime.wait(AgentId(kid.id), Some(Duration::from_secs(10))).unwrap().signal, Some(9));
    let err =
        c.call::<_, ControlReply>(Opcode::KILL, &ControlRequest { target: Target::Name("nobody".into()) }).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound as u16);
}

#[test]
fn a_spawned_agent_talks_over_its_inherited_channel() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    // A shell agent that writes a NOOP frame to CLOVE_FD and copies the reply to a file.
    let dir = std::env::temp_dir().join(format!("clove-it-channel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("reply.bin");
    let mut frame = Vec::new();
    clove_core::protocol::frame::write_frame(
        &mut frame,
        Opcode::NOOP as u8,
        0,
        9,
        &encode(&Echo { data: b"hi".to_vec() }),
    );
    let hex: String = frame.iter().map(|b| format!("\\x{b:02x}")).collect();
    let script = format!("printf '{hex}' >&3; head -c {} <&3 > {}", frame.len(), out.display());
    let id = rt.spawn(quiet("shell-agent", &["bash", "-c", &script])).unwrap();
    assert_eq!(rt.wait(id, Some(Duration::from_secs(10))).unwrap().code, Some(0));
    let reply = std::fs::read(&out).unwrap();
    assert_eq!(&reply[16..], &frame[16..], "the NOOP payload comes back");
    assert_eq!(reply[6], 1, "flagged as a reply");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dropping_the_runtime_kills_its_agents() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    rt.spawn(quiet("orphan", &["sleep", "7.6543"])).unwrap();
    assert_eq!(pids_running(&["sleep", "7.6543"]).len(), 1);
    drop(rt);
    assert!(pids_running(&["sleep", "7.6543"]).is_empty());
}

#[test]
fn event_callback_runs_on_the_reactor_and_may_clear_itself() {
    use std::sync::{Arc, Mutex};
    let rt = Arc::new(Runtime::start(RuntimeConfig::default()).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, weak) = (Arc::clone(&seen), Arc::downgrade(&rt));
    rt.set_event_callback(Some(Arc::new(move |event: &clove_core::runtime::Event| {
        seen2.lock().unwrap().push((std::thread::current().name().map(String::from), event.kind.name().to_string()));
        if matches!(event.kind, EventKind::Exited(_)) {
            // Replacing the callback from inside it must not deadlock.
            if let Some(rt) = weak.upgrade() {
                rt.set_event_callback(None);
            }
        }
    })));
    let id = rt.spawn(quiet("cb", &["true"])).unwrap();
    rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    let second = rt.spawn(quiet("cb2", &["true"])).unwrap();
    rt.wait(second, Some(Duration::from_secs(10))).unwrap();
    let seen = seen.lock().unwrap().clone();
    let reactor = Some("clove-reactor".to_string());
    assert_eq!(seen, [(reactor.clone(), "AGENT_SPAWNED".to_string()), (reactor, "AGENT_EXITED".to_string())]);
}

#[test]
fn waiting_on_an_unknown_id_is_not_found_even_with_no_time_to_wait() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let err = rt.wait(AgentId(0x7_0000_0003), Some(Duration::ZERO)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[test]
fn metrics_count_every_request_and_read_the_process() {
    let fx = Fixture::new("metrics", Level::Standard);
    let mut c = fx.connect();
    for i in 0..3u8 {
        assert_eq!(c.noop(&[i]), [i]);
    }
    let mut unknown = Vec::new();
    clove_core::protocol::frame::write_frame(&mut unknown, 0x99, 0, 500, b"");
    c.send_raw(&unknown);
    assert!(c.read_frame().unwrap().0.is_error());
    let me: AgentMetrics = c.call(Opcode::METRICS_AGENT, &MetricsRequest::default()).unwrap();
    let counts: Vec<(u8, u64)> = me.syscalls.iter().map(|s| (s.opcode, s.count)).collect();
    assert_eq!(counts, [(0x00, 3), (0x99, 1), (Opcode::METRICS_AGENT as u8, 1)]);
    assert_eq!(me.pid, std::process::id(), "a connected agent is the peer process");

    let sys: SystemMetrics = c.call(Opcode::METRICS_SYSTEM, &()).unwrap();
    assert!(sys.memory_total > 0 && sys.cpu_count >= 1 && sys.runtime_rss_bytes > 0, "{sys:?}");

    // A spawned agent's process is read from /proc; a standard agent may not look at it.
    let sleeper = fx.runtime.spawn(quiet("sleeper", &["sleep", "30"])).unwrap();
    let err =
        c.call::<_, AgentMetrics>(Opcode::METRICS_AGENT, &MetricsRequest { agent_id: Some(sleeper.0) }).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    let all: AllAgentMetrics = c.call(Opcode::METRICS_ALL_AGENTS, &()).unwrap();
    assert_eq!(all.agents.iter().map(|a| a.agent_id).collect::<Vec<_>>(), [me.agent_id]);
}

#[test]
fn an_unrestricted_agent_sees_other_agents_metrics() {
    let fx = Fixture::new("metrics-all", Level::Unrestricted);
    let mut c = fx.connect();
    let sleeper = fx.runtime.spawn(quiet("sleeper", &["sleep", "30"])).unwrap();
    let m: AgentMetrics = c.call(Opcode::METRICS_AGENT, &MetricsRequest { agent_id: Some(sleeper.0) }).unwrap();
    assert_eq!((m.name.as_str(), m.state), ("sleeper", AgentState::Running));
    assert!(m.rss_bytes > 0 && m.threads == 1, "{m:?}");
    let all: AllAgentMetrics = c.call(Opcode::METRICS_ALL_AGENTS, &()).unwrap();
    assert_eq!(all.agents.len(), 2);
}

#[test]
fn wait_waits_through_restarts_until_the_agent_is_done() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let mut spec = quiet("flaky", &["sh", "-c", "exit 3"]);
    spec.restart = RestartSpec { policy: RestartPolicy::OnFailure, max_restarts: 1, window_s: 60 };
    let started = Instant::now();
    let id = rt.spawn(spec).unwrap();
    let exit = rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    assert_eq!(exit.code, Some(3));
    // One restart after the 1 s backoff, then the escalation ends it.
    assert!(started.elapsed() >= Duration::from_secs(1), "returned before the restart");
    let kinds: Vec<String> = std::iter::from_fn(|| rt.next_event(Some(Duration::from_millis(50))))
        .map(|e| e.kind.name().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["AGENT_SPAWNED", "AGENT_EXITED", "AGENT_RESTARTING", "AGENT_SPAWNED", "AGENT_EXITED", "AGENT_ESCALATED"]
    );

    // Killing an agent that waits for its restart ends it, and its waiters hear so.
    let mut spec = quiet("flaky2", &["sh", "-c", "exit 4"]);
    spec.restart = RestartSpec { policy: RestartPolicy::Always, max_restarts: 5, window_s: 60 };
    let id = rt.spawn(spec).unwrap();
    assert!(eventually(Duration::from_secs(5), || rt
        .list()
        .unwrap()
        .iter()
        .any(|a| a.id == id.0 && a.state == AgentState::Exited)));
    rt.kill(id).unwrap();
    assert_eq!(rt.wait(id, Some(Duration::from_secs(5))).unwrap().code, Some(4));
}

#[test]
fn on_failure_restarts_back_off_then_escalate_once() {
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let mut spec = quiet("flaky", &["sh", "-c", "exit 1"]);
    spec.restart = RestartSpec { policy: RestartPolicy::OnFailure, max_restarts: 3, window_s: 300 };
    let id = rt.spawn(spec).unwrap();
    assert_eq!(rt.wait(id, Some(Duration::from_secs(20))).unwrap().code, Some(1));
    let events: Vec<_> = std::iter::from_fn(|| rt.next_event(Some(Duration::from_millis(50)))).collect();
    let starts: Vec<u64> =
        events.iter().filter(|e| matches!(e.kind, EventKind::Spawned { .. })).map(|e| e.timestamp_ms).collect();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), 3, "{events:?}");
    for (gap, at_least) in gaps.iter().zip([1_000, 2_000, 4_000]) {
        assert!(*gap >= at_least, "restart after {gap} ms, expected at least {at_least}: {gaps:?}");
    }
    let escalations = events.iter().filter(|e| e.kind == EventKind::Escalated).count();
    assert_eq!(escalations, 1);
    assert!(matches!(events.last().map(|e| &e.kind), Some(EventKind::Escalated)));
}
