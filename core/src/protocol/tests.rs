//! Golden vectors (shared with the Python codec through `tests/vectors/payloads.json`) and the
//! decoder's handling of truncated, oversized, split and pipelined input.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::frame::{flags, write_frame, HEADER_LEN};
use super::*;
use crate::audit::AuditEntry;
use crate::policy::Level;

/// One sample of every message type, named by its type.
fn samples() -> Vec<(&'static str, serde_json::Value, Vec<u8>)> {
    fn s<T: serde::Serialize>(name: &'static str, v: T) -> (&'static str, serde_json::Value, Vec<u8>) {
        (name, serde_json::to_value(&v).unwrap(), encode(&v))
    }
    let kv = |k: &str, v: &str| KeyValue { key: k.to_string(), value: v.to_string() };
    vec![
        s(
            "ErrorReply",
            ErrorReply {
                code: ErrorCode::PermissionDenied as u16,
                message: "permission denied: path /etc/shadow is blocked".into(),
            },
        ),
        s("Hello", Hello { client: "clove_sdk/0.1".into(), token: None }),
        s("Hello", Hello { client: "c".into(), token: Some("s3cret".into()) }),
        s(
            "HelloReply",
            HelloReply {
                protocol_version: 1,
                runtime_version: "0.1.0".into(),
                agent_id: (1 << 32) | 7,
                name: "worker".into(),
                level: Level::Standard,
                features: vec!["exec".into(), "spawn".into()],
            },
        ),
        s("Echo", Echo { data: b"ping \x00\xff".to_vec() }),
        s("RegisterRequest", RegisterRequest { name: "ipc-worker".into() }),
        s("RegisterReply", RegisterReply { agent_id: 9, name: "ipc-worker".into() }),
        s("SendRequest", SendRequest { to: Target::Name("ipc-worker".into()), message_json: r#"{"n":[1,2]}"#.into() }),
        s("SendReply", SendReply { delivered_to: 9 }),
        s("RecvRequest", RecvRequest { max: 10, wait_ms: Some(500) }),
        s(
            "RecvReply",
            RecvReply {
                messages: vec![Message {
                    from: 3,
                    from_name: Some("ipc-main".into()),
                    message_json: "\"hi\"".into(),
                    age_ms: 12,
                }],
            },
        ),
        s("BroadcastRequest", BroadcastRequest { message_json: "1".into(), include_self: true }),
        s("BroadcastReply", BroadcastReply { delivered_count: 2, full: vec![7] }),
        s("SubscribeRequest", SubscribeRequest { event_types: vec!["CUSTOM".into(), "*".into()], all: false }),
        s("SubscribeReply", SubscribeReply { subscribed: vec!["CUSTOM".into()] }),
        s("PollEventsRequest", PollEventsRequest { max: 100 }),
        s(
            "PollEventsReply",
            PollEventsReply {
                events: vec![BusEvent {
                    event_type: "CUSTOM".into(),
                    custom_type: Some("deploy_done".into()),
                    data_json: "{}".into(),
                    source_agent_id: 4,
                    timestamp_ms: 1_700_000_000_000,
                }],
                dropped: 1,
            },
        ),
        s("EmitRequest", EmitRequest { event_type: "deploy_done".into(), data_json: r#"{"v":3}"#.into() }),
        s("EmitReply", EmitReply { delivered: 2 }),
        s("Echo", Echo { data: vec![0xAB; 200] }),
        s(
            "ExecRequest",
            ExecRequest {
                argv: vec!["ls".into(), "-l".into()],
                command: None,
                cwd: Some("/tmp".into()),
                env: vec![kv("A", "1")],
                stdin: b"in".to_vec(),
                timeout_ms: Some(1000),
                max_output: None,
                run_async: false,
            },
        ),
        s("ExecRequest", ExecRequest { command: Some("echo hi".into()), run_async: true, ..Default::default() }),
        s(
            "ExecReply",
            ExecReply {
                exit_code: Some(-1),
                signal: None,
                stdout: b"hi\n".to_vec(),
                stderr: vec![],
                truncated: true,
                duration_ms: 300,
            },
        ),
        s(
            "ExecReply",
            ExecReply {
                exit_code: None,
                signal: Some(9),
                stdout: vec![],
                stderr: b"e".to_vec(),
                truncated: false,
                duration_ms: 1_000_000,
            },
        ),
        s("Accepted", Accepted { request_id: 70000 }),
        s("AsyncPollRequest", AsyncPollRequest { max: 10 }),
        s(
            "AsyncPollReply",
            AsyncPollReply {
                results: vec![
                    AsyncResult { request_id: 3, opcode: Opcode::EXEC as u8, error: None, payload: vec![1, 2, 3] },
                    AsyncResult {
                        request_id: 4,
                        opcode: Opcode::EXEC as u8,
                        error: Some(ErrorReply { code: ErrorCode::Timeout as u16, message: "t".into() }),
                        payload: vec![],
                    },
                ],
            },
        ),
        s("ReadRequest", ReadRequest { path: "/tmp/a".into(), offset: 300, max_bytes: Some(1 << 20) }),
        s("ReadReply", ReadReply { content: (0u8..=255).collect(), size: 256 }),
        s("WriteRequest", WriteRequest { path: "/tmp/a".into(), content: b"x\ny".to_vec(), append: true }),
        s("WriteReply", WriteReply { bytes_written: 3 }),
        s(
            "SpawnRequest",
            SpawnRequest {
                name: "worker".into(),
                argv: vec![],
                script: Some("/srv/agent.py".into()),
                interpreter: None,
                env: vec![kv("K", "V")],
                cwd: None,
                level: Some(Level::Sandboxed),
                sandboxed: true,
                network: false,
                limits: Limits {
                    memory: Some(256 << 20),
                    max_pids: Some(64),
                    cpu_quota: Some(50_000),
                    cpu_period: Some(100_000),
                    cpu_shares: None,
                },
                restart: RestartSpec { policy: RestartPolicy::OnFailure, max_restarts: 3, window_s: 300 },
                vm: Some(VmSpec { vcpus: 2 }),
            },
        ),
        s("SpawnReply", SpawnReply { id: (2 << 32) | 1, name: "worker".into(), pid: 4242, state: AgentState::Running }),
        s("ControlRequest", ControlRequest { target: Target::Id(5) }),
        s("ControlRequest", ControlRequest { target: Target::Name("worker".into()) }),
        s("ControlReply", ControlReply { agent_id: 5 }),
        s(
            "ListReply",
            ListReply {
                agents: vec![
                    AgentInfo {
                        id: 1,
                        name: "a".into(),
                        pid: 10,
                        state: AgentState::Paused,
                        uptime_ms: 1500,
                        level: Some(Level::Minimal),
                        parent: None,
                        exit: None,
                    },
                    AgentInfo {
                        id: 2,
                        name: "b".into(),
                        pid: 11,
                        state: AgentState::Exited,
                        uptime_ms: 0,
                        level: None,
                        parent: Some(1),
                        exit: Some(ExitInfo { code: None, signal: Some(9), oom_killed: true }),
                    },
                ],
            },
        ),
        s(
            "PermsReply",
            PermsReply {
                agent_id: 1,
                level: Some(Level::Readonly),
                ceiling: Some(Level::Standard),
                permissions_json: "{\"can_read\":true}".into(),
            },
        ),
        s(
            "SetPermsRequest",
            SetPermsRequest { agent_id: Some(9), level: None, permissions_json: Some("{\"exec\":[\"ls\"]}".into()) },
        ),
        s("MetricsRequest", MetricsRequest { agent_id: Some(3) }),
        s(
            "AgentMetrics",
            AgentMetrics {
                agent_id: 3,
                name: "hog".into(),
                state: AgentState::Running,
                pid: 77,
                uptime_ms: 1234,
                cpu_time_us: 999_999,
                rss_bytes: 50 << 20,
                threads: 2,
                fds: 5,
                syscalls: vec![SyscallCount { opcode: 0, count: 300 }, SyscallCount { opcode: 0x99, count: 1 }],
                cgroup: Some(CgroupMetrics {
                    cpu_usage_us: 5,
                    cpu_throttled_us: 6,
                    nr_throttled: 7,
                    memory_current: 8,
                    memory_peak: 9,
                    pids_current: 10,
                    oom_kills: 1,
                }),
            },
        ),
        s("AllAgentMetrics", AllAgentMetrics { agents: vec![] }),
        s("CgroupMetrics", CgroupMetrics::default()),
        s(
            "SystemMetrics",
            SystemMetrics {
                cpu_count: 2,
                load_avg_milli: vec![150, 80, 20],
                memory_total: 24 << 30,
                memory_available: 20 << 30,
                uptime_ms: 86_400_000,
                agents_running: 4,
                runtime_rss_bytes: 3 << 20,
            },
        ),
        // The state store.
        s(
            "StoreRequest",
            StoreRequest {
                key: "job:1".into(),
                value_json: r#"{"x":[1,2]}"#.into(),
                scope: Scope::Session,
                ttl_ms: Some(1500),
            },
        ),
        s(
            "StoreReply",
            StoreReply { key: "job:1".into(), scope: Scope::Agent, expires_at_ms: Some(1_700_000_001_500) },
        ),
        s("KeyRequest", KeyRequest { key: "g".into(), scope: None }),
        s(
            "FetchReply",
            FetchReply {
                value: Some(StoredValue { scope: Scope::Global, value_json: "5".into(), expires_at_ms: None }),
            },
        ),
        s("FetchReply", FetchReply { value: None }),
        s("DeleteReply", DeleteReply { deleted: Some(Scope::Session) }),
        s("KeysRequest", KeysRequest { prefix: "job:".into(), scope: None, after: Some("job:1".into()), limit: 2 }),
        s(
            "KeysReply",
            KeysReply {
                keys: vec![
                    KeyEntry { key: "job:2".into(), scope: Scope::Global },
                    KeyEntry { key: "job:2".into(), scope: Scope::Agent },
                ],
                more: true,
            },
        ),
        s(
            "RecordStartRequest",
            RecordStartRequest { include_exec: true, filter_agents: vec![3], max_entries: 10, ..Default::default() },
        ),
        s("RecordStatusRequest", RecordStatusRequest { export: true }),
        s(
            "RecordStatus",
            RecordStatus { recording: false, entries: 2, truncated: 1, recording_json: Some("{}".into()) },
        ),
        s("ReplayStartRequest", ReplayStartRequest { recording_json: "{}".into(), source_agent_id: Some(3) }),
        s("ReplayStatus", ReplayStatus { active: false, position: 1, total: 2, diverged: Some("why".into()) }),
        s(
            "SetAuditConfigRequest",
            SetAuditConfigRequest { log_syscalls: Some(true), max_entries: Some(500), ..Default::default() },
        ),
        s("AuditConfigReply", AuditConfigReply { config: crate::audit::AuditConfig::default(), max_entries: 500 }),
        s(
            "AuditQuery",
            AuditQuery { category: Some("security".into()), agent_id: None, since_id: Some(12), limit: 50 },
        ),
        s(
            "AuditLogReply",
            AuditLogReply {
                entries: vec![AuditEntry {
                    id: 1,
                    timestamp_ms: 1_700_000_000_000,
                    category: "security".into(),
                    event: "READ".into(),
                    agent_id: 3,
                    agent_name: "x".into(),
                    success: false,
                    details_json: "{}".into(),
                }],
            },
        ),
        s(
            "ThinkRequest",
            ThinkRequest {
                prompt: "What is 2+2?".into(),
                image: Some(ThinkImage { data: vec![0x89, b'P', b'N', b'G'], mime_type: "image/png".into() }),
                system_instruction: Some("Be brief.".into()),
                temperature_milli: Some(700),
                model: Some("gpt-4o-mini".into()),
                max_tokens: Some(256),
                thinking_level: Some("low".into()),
                run_async: false,
            },
        ),
        s("ThinkRequest", ThinkRequest { prompt: "hi".into(), run_async: true, ..Default::default() }),
        s(
            "ThinkReply",
            ThinkReply {
                text: "4".into(),
                model: "gpt-4o-mini-2024-07-18".into(),
                provider: "openai".into(),
                input_tokens: 21,
                output_tokens: 300,
            },
        ),
        s(
            "HttpRequest",
            HttpRequest {
                url: "https://api.example.com/v1/items?q=1".into(),
                method: "POST".into(),
                headers: vec![kv("content-type", "application/json")],
                body: b"{\"a\":1}".to_vec(),
                timeout_ms: Some(5000),
                max_response_bytes: Some(1 << 16),
                run_async: true,
            },
        ),
        s(
            "HttpReply",
            HttpReply {
                status: 404,
                headers: vec![kv("content-length", "9"), kv("x-trace", "abc")],
                body: b"not found".to_vec(),
                truncated: false,
                url: "https://api.example.com/v2/items".into(),
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}

fn vectors_json() -> String {
    let payloads: Vec<serde_json::Value> = samples()
        .into_iter()
        .map(|(name, value, bytes)| serde_json::json!({ "type": name, "value": value, "hex": hex(&bytes) }))
        .collect();
    let mut noop = Vec::new();
    write_frame(&mut noop, Opcode::NOOP as u8, 0, 7, &encode(&Echo { data: b"hi".to_vec() }));
    let mut error = Vec::new();
    write_error(
        &mut error,
        0x99,
        3,
        &ErrorReply { code: ErrorCode::UnknownOpcode as u16, message: "unknown opcode 0x99".into() },
    );
    let frames = serde_json::json!([
        { "name": "noop_request", "opcode": 0, "flags": 0, "request_id": 7, "hex": hex(&noop) },
        { "name": "unknown_opcode_error_reply", "opcode": 0x99, "flags": flags::REPLY | flags::ERROR, "request_id": 3, "hex": hex(&error) },
    ]);
    let mut out = serde_json::to_string_pretty(&serde_json::json!({ "payloads": payloads, "frames": frames })).unwrap();
    out.push('\n');
    out
}

/// The vectors file must match what this codec produces; `CLOVE_BLESS=1` rewrites it.
#[test]
fn golden_vectors_match_the_codec() {
    extern crate std;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/payloads.json");
    let fresh = vectors_json();
    if std::env::var_os("CLOVE_BLESS").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(path).expect("tests/vectors/payloads.json (run with CLOVE_BLESS=1 to create)");
    assert!(stored == fresh, "tests/vectors/payloads.json differs from the codec; review and rerun with CLOVE_BLESS=1");
}

#[test]
fn every_sample_decodes_back_to_itself() {
    fn round<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug>(v: T) {
        assert_eq!(decode::<T>(&encode(&v)).unwrap(), v);
    }
    round(ExecRequest { argv: vec!["a".into()], timeout_ms: Some(1), ..Default::default() });
    round(ControlRequest { target: Target::Name("n".into()) });
    round(SpawnRequest { restart: RestartSpec::default(), ..Default::default() });
    assert!(matches!(decode::<WriteReply>(&[3, 0]), Err(PayloadError::Trailing(1))));
    assert!(matches!(decode::<ReadRequest>(&[200]), Err(PayloadError::Malformed(_))));
    // A length prefix larger than the payload is an error, not an allocation.
    assert!(matches!(decode::<Echo>(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(PayloadError::Malformed(_))));
}

fn frame(opcode: u8, request_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, 0, request_id, payload);
    out
}

#[test]
fn split_frames_need_more_then_decode() {
    let bytes = frame(0, 9, b"abc");
    // Pre-filled junk must not leak into the frame.
    let mut d = FrameDecoder::new(64);
    for (i, b) in bytes.iter().enumerate() {
        match d.decode().unwrap() {
            Decoded::NeedMore(n) => assert!(n >= 1 && n <= bytes.len() - i, "need {n} at {i}"),
            Decoded::Frame(..) => panic!("frame before all bytes arrived"),
        }
        d.extend(&[*b]);
    }
    let Decoded::Frame(h, payload) = d.decode().unwrap() else { panic!("no frame") };
    assert_eq!((h.opcode, h.request_id, payload), (0, 9, &b"abc"[..]));
    assert_eq!(d.decode().unwrap(), Decoded::NeedMore(HEADER_LEN));
}

#[test]
fn pipelined_frames_come_out_in_order() {
    let mut bytes = frame(0, 1, b"a");
    bytes.extend(frame(0x02, 2, b""));
    bytes.extend(frame(0xFE, 3, b"ccc"));
    let mut d = FrameDecoder::new(64);
    d.extend(&bytes);
    let mut ids = Vec::new();
    while let Decoded::Frame(h, _) = d.decode().unwrap() {
        ids.push(h.request_id);
    }
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn bad_magic_version_and_oversize_are_errors() {
    let mut bad = frame(0, 1, b"");
    bad[0..4].copy_from_slice(&0xDEADBEEFu32.to_le_bytes());
    let mut d = FrameDecoder::new(64);
    d.extend(&bad);
    assert!(matches!(d.decode(), Err(FrameError::BadMagic(_))));

    let mut v2 = frame(0, 1, b"");
    v2[4] = 2;
    let mut d = FrameDecoder::new(64);
    d.extend(&v2);
    assert_eq!(d.decode(), Err(FrameError::UnsupportedVersion(2)));

    // Only the header of an oversized frame is needed to refuse it.
    let header = FrameHeader::request(Opcode::WRITE, 1, 65).to_bytes();
    let mut d = FrameDecoder::new(64);
    d.extend(&header);
    assert_eq!(d.decode(), Err(FrameError::Oversized { len: 65, max: 64 }));
}
