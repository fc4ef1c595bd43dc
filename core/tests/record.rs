//! Record and replay through the protocol: a recorded run's READ and EXEC results (sync, async and
//! failed) come back to a fresh agent asking the same, even after the world changed; an edited
//! recording is honoured; divergence and the live policy stop a replay.

mod common;

use std::time::Duration;

use clove_core::policy::Level;
use clove_core::protocol::*;
use common::{Client, Fixture};

fn read(client: &mut Client, path: &str) -> Result<ReadReply, ErrorReply> {
    client.call(Opcode::READ, &ReadRequest { path: path.into(), offset: 0, max_bytes: None })
}

fn exec(client: &mut Client, command: &str, run_async: bool) -> Vec<u8> {
    let argv = vec!["/bin/sh".into(), "-c".into(), command.into()];
    let req = ExecRequest { argv, run_async, ..Default::default() };
    let id = client.send(Opcode::EXEC, &req);
    let (header, payload) = client.read_frame().unwrap();
    assert_eq!(header.request_id, id);
    assert!(!header.is_error(), "{:?}", decode::<ErrorReply>(&payload));
    payload
}

fn poll_one(client: &mut Client) -> AsyncResult {
    client.await_async(Duration::from_secs(10)).remove(0)
}

/// Runs the scripted session: the results a replay must reproduce.
fn session(client: &mut Client, file: &str, missing: &str) -> (Vec<u8>, ExecReply, ExecReply, ErrorReply) {
    let content = read(client, file).unwrap().content;
    let ran: ExecReply = decode(&exec(client, "echo $((6 * 7)) $(date +%N)", false)).unwrap();
    let accepted: Accepted = decode(&exec(client, "echo async $(date +%N)", true)).unwrap();
    let result = poll_one(client);
    assert_eq!(result.request_id, accepted.request_id);
    let later: ExecReply = decode(&result.payload).unwrap();
    (content, ran, later, read(client, missing).unwrap_err())
}

fn record(fx: &Fixture, file: &std::path::Path) -> (String, (Vec<u8>, ExecReply, ExecReply, ErrorReply)) {
    let mut recorder = fx.connect();
    let start = RecordStartRequest { include_exec: true, ..Default::default() };
    let status: RecordStatus = recorder.call(Opcode::RECORD_START, &start).unwrap();
    assert!(status.recording);
    let missing = fx.dir.join("missing.txt");
    let live = session(&mut recorder, &file.display().to_string(), &missing.display().to_string());
    let stopped: RecordStatus = recorder.call(Opcode::RECORD_STOP, &()).unwrap();
    assert_eq!((stopped.recording, stopped.entries), (false, 4));
    let exported: RecordStatus = recorder.call(Opcode::RECORD_STATUS, &RecordStatusRequest { export: true }).unwrap();
    (exported.recording_json.unwrap(), live)
}

#[test]
fn a_replay_returns_the_recorded_results_after_the_world_changed() {
    let fx = Fixture::new("record-replay", Level::Unrestricted);
    let file = fx.dir.join("input.txt");
    std::fs::write(&file, "version 1").unwrap();
    let (recording, live) = record(&fx, &file);
    assert_eq!(live.0, b"version 1");
    assert!(String::from_utf8_lossy(&live.1.stdout).starts_with("42 "), "{:?}", live.1);

    std::fs::write(&file, "version 2").unwrap();
    let mut fresh = fx.connect();
    let req = ReplayStartRequest { recording_json: recording.clone(), source_agent_id: None };
    let status: ReplayStatus = fresh.call(Opcode::REPLAY_START, &req).unwrap();
    assert_eq!((status.active, status.total), (true, 4));
    let missing = fx.dir.join("missing.txt").display().to_string();
    let replayed = session(&mut fresh, &file.display().to_string(), &missing);
    assert_eq!(replayed.0, b"version 1", "the recorded content, not the file's current one");
    assert_eq!(replayed.1, live.1, "the same nanoseconds");
    assert_eq!(replayed.2, live.2, "the async result too");
    assert_eq!(replayed.3, live.3, "the same error");
    let status: ReplayStatus = fresh.call(Opcode::REPLAY_STATUS, &()).unwrap();
    assert_eq!((status.position, status.total, status.diverged), (4, 4, None));
    // Live requests the recording does not hold still run.
    assert_eq!(fresh.noop(b"live"), b"live");

    // Past the end of the recording, a recorded kind of request is refused, not run live.
    let beyond = read(&mut fresh, &file.display().to_string()).unwrap_err();
    assert_eq!(beyond.code, ErrorCode::Conflict as u16);
    assert!(beyond.message.contains("nothing more"), "{}", beyond.message);

    // An edited recording is what the replay returns.
    let mut edited: serde_json::Value = serde_json::from_str(&recording).unwrap();
    edited["entries"][0]["reply"]["content"] = serde_json::json!(b"edited".to_vec());
    let mut other = fx.connect();
    let req = ReplayStartRequest { recording_json: edited.to_string(), source_agent_id: None };
    let _: ReplayStatus = other.call(Opcode::REPLAY_START, &req).unwrap();
    assert_eq!(read(&mut other, &file.display().to_string()).unwrap().content, b"edited");
}

#[test]
fn a_different_request_ends_the_replay_with_both_named() {
    let fx = Fixture::new("record-diverge", Level::Unrestricted);
    let file = fx.dir.join("input.txt");
    std::fs::write(&file, "x").unwrap();
    let (recording, _) = record(&fx, &file);
    let mut fresh = fx.connect();
    let req = ReplayStartRequest { recording_json: recording, source_agent_id: None };
    let _: ReplayStatus = fresh.call(Opcode::REPLAY_START, &req).unwrap();
    let other = fx.dir.join("other.txt");
    std::fs::write(&other, "y").unwrap();
    let diverged = read(&mut fresh, &other.display().to_string()).unwrap_err();
    assert_eq!(diverged.code, ErrorCode::Conflict as u16);
    assert!(diverged.message.contains("READ #1") && diverged.message.contains("asked READ"), "{}", diverged.message);
    let status: ReplayStatus = fresh.call(Opcode::REPLAY_STATUS, &()).unwrap();
    assert!(!status.active && status.diverged.is_some());
    // Once diverged, the agent runs live again: its READ reads the real file.
    assert_eq!(read(&mut fresh, &other.display().to_string()).unwrap().content, b"y");
}

#[test]
fn a_replay_cannot_give_an_agent_more_than_its_policy() {
    let recorded = Fixture::new("record-policy-src", Level::Unrestricted);
    let file = recorded.dir.join("input.txt");
    std::fs::write(&file, "x").unwrap();
    let (recording, _) = record(&recorded, &file);
    let limited = Fixture::new("record-policy-dst", Level::Standard);
    let mut agent = limited.connect();
    let req = ReplayStartRequest { recording_json: recording, source_agent_id: None };
    let _: ReplayStatus = agent.call(Opcode::REPLAY_START, &req).unwrap();
    let _ = read(&mut agent, &file.display().to_string());
    // A standard agent may not EXEC: a recorded EXEC result is refused like a live one.
    let denied: Result<ExecReply, ErrorReply> =
        agent.call(Opcode::EXEC, &ExecRequest { argv: vec!["/bin/true".into()], ..Default::default() });
    assert_eq!(denied.unwrap_err().code, ErrorCode::PermissionDenied as u16);
    // Nor may it record agents it cannot observe, or import garbage.
    let spy = RecordStartRequest { filter_agents: vec![u64::MAX], ..Default::default() };
    let refused: Result<RecordStatus, ErrorReply> = agent.call(Opcode::RECORD_START, &spy);
    assert!(refused.is_err());
    let garbage = ReplayStartRequest { recording_json: "{\"version\": 9}".into(), source_agent_id: None };
    let refused: Result<ReplayStatus, ErrorReply> = agent.call(Opcode::REPLAY_START, &garbage);
    assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidArgument as u16);
}
