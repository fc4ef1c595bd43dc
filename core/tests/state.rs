//! The state store through the protocol: the seed's scenario S8 (scopes, TTL, nested values),
//! sessions down a spawn tree, who may delete, caps and quotas, and the durable store across a
//! restart. (Durability across `kill -9` of the host: `cli/tests/state.rs`.)

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::{AgentId, Runtime, RuntimeConfig};
use clove_core::state::StateLimits;
use common::{Client, Fixture};
use serde_json::{json, Value};

type Reply<T> = Result<T, ErrorReply>;

fn store(c: &mut Client, key: &str, value: &Value, scope: Scope, ttl_ms: Option<u64>) -> Reply<StoreReply> {
    let req = StoreRequest { key: key.into(), value_json: value.to_string(), scope, ttl_ms };
    c.call(Opcode::STORE, &req)
}

fn fetch(c: &mut Client, key: &str) -> Option<(Scope, Value)> {
    let reply: FetchReply = c.call(Opcode::FETCH, &KeyRequest { key: key.into(), scope: None }).unwrap();
    reply.value.map(|v| (v.scope, serde_json::from_str(&v.value_json).unwrap()))
}

fn delete(c: &mut Client, key: &str, scope: Option<Scope>) -> Reply<Option<Scope>> {
    c.call(Opcode::DELETE, &KeyRequest { key: key.into(), scope }).map(|r: DeleteReply| r.deleted)
}

fn keys(c: &mut Client, prefix: &str) -> Vec<(String, Scope)> {
    let reply: KeysReply = c.call(Opcode::KEYS, &KeysRequest { prefix: prefix.into(), ..Default::default() }).unwrap();
    reply.keys.into_iter().map(|e| (e.key, e.scope)).collect()
}

fn sleep_until(start: Instant, after: Duration) {
    std::thread::sleep((start + after).saturating_duration_since(Instant::now()));
}

#[test]
fn s8_scopes_ttl_and_nested_values() {
    let fx = Fixture::new("state-s8", Level::Standard);
    let (mut a, mut b) = (fx.connect(), fx.connect());

    // 1. Agent scope is private to its owner.
    store(&mut a, "k", &json!({"x": 1}), Scope::Agent, None).unwrap();
    assert_eq!(fetch(&mut b, "k"), None);
    assert_eq!(fetch(&mut a, "k"), Some((Scope::Agent, json!({"x": 1}))));

    // 2. Global scope is everyone's.
    let stored = store(&mut a, "g", &json!(5), Scope::Global, None).unwrap();
    assert_eq!((stored.key.as_str(), stored.scope, stored.expires_at_ms), ("g", Scope::Global, None));
    assert_eq!(fetch(&mut b, "g"), Some((Scope::Global, json!(5))));

    // 3. A ttl of 1 s: there at 0.5 s; gone at 1.5 s, from FETCH and from KEYS.
    let start = Instant::now();
    let stored = store(&mut a, "t", &json!("v"), Scope::Global, Some(1_000)).unwrap();
    assert!(stored.expires_at_ms.is_some());
    sleep_until(start, Duration::from_millis(500));
    assert_eq!(fetch(&mut b, "t"), Some((Scope::Global, json!("v"))));
    assert!(keys(&mut b, "t").contains(&("t".into(), Scope::Global)));
    sleep_until(start, Duration::from_millis(1_500));
    assert_eq!(fetch(&mut b, "t"), None);
    assert!(!keys(&mut b, "t").iter().any(|(k, _)| k == "t"));

    // 4. Nested values come back deep-equal.
    let nested = json!({"a": [1, 2.5, {"b": null, "c": [true, "ü\n\"q\""]}], "n": -12345678901234_i64, "e": {}});
    store(&mut a, "nested", &nested, Scope::Global, None).unwrap();
    assert_eq!(fetch(&mut b, "nested"), Some((Scope::Global, nested)));
}

#[test]
fn a_session_is_shared_down_the_spawn_tree_and_nowhere_else() {
    let fx = Fixture::new("state-session", Level::Unrestricted);
    let (mut parent, mut stranger) = (fx.connect(), fx.connect());
    store(&mut parent, "plan", &json!({"step": 1}), Scope::Session, None).unwrap();
    store(&mut parent, "mine", &json!(1), Scope::Agent, None).unwrap();

    // The child sees the session's key, not its parent's agent key, and answers in the session.
    let child_script = r#"
from clove_sdk import CloveClient
with CloveClient() as c:
    assert c.fetch("plan") == {"success": True, "exists": True, "value": {"step": 1}, "scope": "session"}, c.fetch("plan")
    assert c.fetch("mine")["exists"] is False
    assert c.store("reply", [1, 2], scope="session")["success"]
"#;
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../bindings/python");
    let req = SpawnRequest {
        name: "child".into(),
        argv: vec!["python3".into(), "-c".into(), child_script.into()],
        env: vec![KeyValue { key: "PYTHONPATH".into(), value: sdk.into() }],
        ..Default::default()
    };
    let child: SpawnReply = parent.call(Opcode::SPAWN, &req).unwrap();
    let exit = fx.runtime.wait(AgentId(child.id), Some(Duration::from_secs(20))).unwrap();
    assert_eq!(exit.code, Some(0), "the child's checks failed (its stderr is above)");

    assert_eq!(fetch(&mut parent, "reply"), Some((Scope::Session, json!([1, 2]))));
    assert_eq!(fetch(&mut stranger, "plan"), None);
    assert_eq!(fetch(&mut stranger, "reply"), None);
    assert_eq!(delete(&mut stranger, "plan", Some(Scope::Session)).unwrap(), None);
    assert!(keys(&mut stranger, "").is_empty());
}

#[test]
fn delete_reaches_what_the_caller_sees_and_writes_need_the_write_right() {
    let fx = Fixture::new("state-delete", Level::Standard);
    let (mut a, mut b) = (fx.connect(), fx.connect());
    store(&mut a, "k", &json!("a's"), Scope::Agent, None).unwrap();
    store(&mut a, "k", &json!("everyone's"), Scope::Global, None).unwrap();
    // B cannot reach A's agent key: its DELETE takes the global key of that name.
    assert_eq!(delete(&mut b, "k", Some(Scope::Agent)).unwrap(), None);
    assert_eq!(delete(&mut b, "k", None).unwrap(), Some(Scope::Global));
    assert_eq!(fetch(&mut a, "k"), Some((Scope::Agent, json!("a's"))));
    assert_eq!(delete(&mut a, "k", None).unwrap(), Some(Scope::Agent));
    assert_eq!(delete(&mut a, "k", None).unwrap(), None);

    // A readonly agent reads state but may not write it; the denial is audited.
    store(&mut a, "g", &json!(1), Scope::Global, None).unwrap();
    let me: HelloReply = b.call(Opcode::HELLO, &Hello::default()).unwrap();
    let lowered = SetPermsRequest { level: Some(Level::Readonly), ..Default::default() };
    b.call::<_, PermsReply>(Opcode::SET_PERMS, &lowered).unwrap();
    assert_eq!(fetch(&mut b, "g"), Some((Scope::Global, json!(1))));
    let err = store(&mut b, "g", &json!(2), Scope::Global, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);
    assert!(err.message.contains("writing state"), "{}", err.message);
    assert_eq!(delete(&mut b, "g", None).unwrap_err().code, ErrorCode::PermissionDenied as u16);
    let denials = fx
        .runtime
        .audit_log(AuditQuery { category: Some("security".into()), agent_id: Some(me.agent_id), ..Default::default() })
        .unwrap();
    assert_eq!(denials.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["STORE", "DELETE"]);

    let writes = fx.runtime.audit_log(AuditQuery { category: Some("state".into()), ..Default::default() }).unwrap();
    let details: Value = serde_json::from_str(&writes[0].details_json).unwrap();
    assert_eq!(
        (writes[0].event.as_str(), details["key"].as_str(), details["scope"].as_str()),
        ("STORE", Some("k"), Some("agent"))
    );
    assert!(writes.iter().any(|e| e.event == "DELETE" && e.agent_id == me.agent_id));
}

#[test]
fn caps_and_quotas_are_clear_errors() {
    let limits = StateLimits {
        max_key_bytes: 16,
        max_value_bytes: 128,
        max_keys_per_agent: 3,
        max_bytes_per_agent: 1 << 20,
        max_total_bytes: 100,
    };
    let config = RuntimeConfig { state_limits: limits, ..RuntimeConfig::default() };
    let fx = Fixture::with_config("state-caps", Level::Standard, config);
    let (mut a, mut b) = (fx.connect(), fx.connect());

    let err = store(&mut a, "k", &json!("x".repeat(200)), Scope::Global, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded as u16);
    assert!(err.message.contains("202 bytes") && err.message.contains("cap of 128"), "{}", err.message);
    let err = store(&mut a, &"k".repeat(17), &json!(1), Scope::Global, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument as u16, "{}", err.message);
    let bad = StoreRequest { key: "k".into(), value_json: "{not json".into(), scope: Scope::Global, ttl_ms: None };
    let err = a.call::<_, StoreReply>(Opcode::STORE, &bad).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument as u16);
    assert!(err.message.contains("not JSON"), "{}", err.message);
    let zero = store(&mut a, "k", &json!(1), Scope::Global, Some(0)).unwrap_err();
    assert_eq!(zero.code, ErrorCode::InvalidArgument as u16);

    for key in ["a", "b", "c"] {
        store(&mut a, key, &json!(1), Scope::Agent, None).unwrap();
    }
    let err = store(&mut a, "d", &json!(1), Scope::Global, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded as u16);
    assert!(err.message.contains("quota of 3"), "{}", err.message);
    let refused = fx.runtime.audit_log(AuditQuery { category: Some("state".into()), ..Default::default() }).unwrap();
    assert!(refused.iter().any(|e| !e.success && e.details_json.contains("quota of 3")));

    // The whole store's cap: B fills it; once A is gone, its keys go and leave room.
    store(&mut b, "big", &json!("y".repeat(87)), Scope::Global, None).unwrap();
    assert_eq!(
        store(&mut b, "more", &json!(1), Scope::Global, None).unwrap_err().code,
        ErrorCode::LimitExceeded as u16
    );
    drop(a);
    assert!(
        common::eventually(Duration::from_secs(5), || store(&mut b, "more", &json!(1), Scope::Global, None).is_ok())
    );
}

#[test]
fn keys_come_in_pages_of_what_the_caller_sees() {
    let fx = Fixture::new("state-keys", Level::Standard);
    let (mut a, mut b) = (fx.connect(), fx.connect());
    for i in 0..5 {
        store(&mut a, &format!("job:{i}"), &json!(i), Scope::Global, None).unwrap();
    }
    store(&mut a, "job:2", &json!("private"), Scope::Agent, None).unwrap();
    store(&mut b, "job:b", &json!(0), Scope::Agent, None).unwrap();
    store(&mut a, "other", &json!(0), Scope::Global, None).unwrap();

    let mut seen = Vec::new();
    let mut req = KeysRequest { prefix: "job:".into(), limit: 2, ..Default::default() };
    loop {
        let page: KeysReply = a.call(Opcode::KEYS, &req).unwrap();
        seen.extend(page.keys.iter().map(|e| (e.key.clone(), e.scope)));
        if !page.more {
            break;
        }
        req.after = page.keys.last().map(|e| e.key.clone());
    }
    let global = |i: u32| (format!("job:{i}"), Scope::Global);
    let expected = vec![global(0), global(1), global(2), ("job:2".into(), Scope::Agent), global(3), global(4)];
    assert_eq!(seen, expected);
    assert_eq!(keys(&mut b, "job:b"), [("job:b".into(), Scope::Agent)]);
}

/// The STATE_CHANGED events queued for `c`: (key, scope, action, source agent).
fn state_events(c: &mut Client) -> Vec<(String, String, String, u64)> {
    let reply: PollEventsReply = c.call(Opcode::POLL_EVENTS, &PollEventsRequest { max: 0 }).unwrap();
    reply
        .events
        .into_iter()
        .filter(|e| e.event_type == "STATE_CHANGED")
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data_json).unwrap();
            let field = |name: &str| data[name].as_str().unwrap().to_string();
            (field("key"), field("scope"), field("action"), e.source_agent_id)
        })
        .collect()
}

#[test]
fn state_changed_reaches_those_who_can_read_the_key() {
    let fx = Fixture::new("state-events", Level::Standard);
    let (mut a, mut b, mut blind) = (fx.connect(), fx.connect(), fx.connect());
    let a_id = a.call::<_, HelloReply>(Opcode::HELLO, &Hello::default()).unwrap().agent_id;
    let subscribe = SubscribeRequest { event_types: vec!["STATE_CHANGED".into()], all: false };
    for c in [&mut a, &mut b, &mut blind] {
        c.call::<_, SubscribeReply>(Opcode::SUBSCRIBE, &subscribe).unwrap();
    }
    // An agent without the read right learns nothing about keys, not even their names.
    blind
        .call::<_, PermsReply>(
            Opcode::SET_PERMS,
            &SetPermsRequest { level: Some(Level::Minimal), ..Default::default() },
        )
        .unwrap();

    store(&mut a, "g", &json!(5), Scope::Global, None).unwrap();
    store(&mut a, "mine", &json!(1), Scope::Agent, None).unwrap();
    store(&mut a, "ours", &json!(1), Scope::Session, None).unwrap();
    delete(&mut b, "g", None).unwrap();
    store(&mut b, "brief", &json!(1), Scope::Global, Some(50)).unwrap();

    let event = |key: &str, scope: &str, action: &str, by: u64| (key.into(), scope.into(), action.into(), by);
    let b_id = b.call::<_, HelloReply>(Opcode::HELLO, &Hello::default()).unwrap().agent_id;
    assert!(common::eventually(Duration::from_secs(5), || fetch(&mut a, "brief").is_none()));
    let expected_b = [
        event("g", "global", "store", a_id),
        event("g", "global", "delete", b_id),
        event("brief", "global", "store", b_id),
    ];
    let mut seen_b = state_events(&mut b);
    // The expiry is announced by the timer at its time, by the runtime (source 0).
    assert!(common::eventually(Duration::from_secs(5), || {
        seen_b.extend(state_events(&mut b));
        seen_b.len() > 3
    }));
    assert_eq!(seen_b[..3], expected_b);
    assert_eq!(seen_b[3..], [event("brief", "global", "expire", 0)]);
    let seen_a = state_events(&mut a);
    assert_eq!(seen_a[1..3], [event("mine", "agent", "store", a_id), event("ours", "session", "store", a_id)]);
    assert_eq!(seen_a.len(), 6);
    assert!(state_events(&mut blind).is_empty());
}

#[test]
fn unknown_and_malformed_state_requests_get_errors_and_the_connection_lives() {
    let fx = Fixture::new("state-malformed", Level::Standard);
    let mut a = fx.connect();
    let err = a.call::<_, FetchReply>(Opcode::FETCH, &[0xFFu8; 3]).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadPayload as u16);
    let hello: HelloReply = a.call(Opcode::HELLO, &Hello::default()).unwrap();
    assert!(hello.features.contains(&"state".to_string()));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("clove-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn durable(tag: &str, path: &std::path::Path) -> Fixture {
    let config = RuntimeConfig { state_path: Some(path.to_path_buf()), ..RuntimeConfig::default() };
    Fixture::with_config(tag, Level::Standard, config)
}

#[test]
fn global_keys_and_their_expiry_outlive_the_runtime_and_private_keys_do_not() {
    let dir = TempDir::new("state-restart");
    let db = dir.0.join("state.redb");
    let (kept_until, start) = {
        let fx = durable("state-restart-1", &db);
        let mut a = fx.connect();
        // A reply pipelined behind a durable write comes after it: nothing shows before the disk has it.
        let put = a.send(
            Opcode::STORE,
            &StoreRequest {
                key: "g".into(),
                value_json: r#"{"deep":[1,{"x":"y"}]}"#.into(),
                scope: Scope::Global,
                ttl_ms: None,
            },
        );
        let get = a.send(Opcode::FETCH, &KeyRequest { key: "g".into(), scope: None });
        let order: Vec<u32> = (0..2).map(|_| a.read_frame().unwrap().0.request_id).collect();
        assert_eq!(order, [put, get]);

        let kept = store(&mut a, "kept", &json!(1), Scope::Global, Some(60_000)).unwrap();
        let start = Instant::now();
        store(&mut a, "brief", &json!(1), Scope::Global, Some(300)).unwrap();
        store(&mut a, "gone", &json!(1), Scope::Global, None).unwrap();
        assert_eq!(delete(&mut a, "gone", None).unwrap(), Some(Scope::Global));
        store(&mut a, "private", &json!(1), Scope::Agent, None).unwrap();
        store(&mut a, "shared", &json!(1), Scope::Session, None).unwrap();
        (kept.expires_at_ms, start)
    };
    sleep_until(start, Duration::from_millis(300));
    let fx = durable("state-restart-2", &db);
    let mut b = fx.connect();
    assert_eq!(fetch(&mut b, "g"), Some((Scope::Global, json!({"deep": [1, {"x": "y"}]}))));
    let kept: FetchReply = b.call(Opcode::FETCH, &KeyRequest { key: "kept".into(), scope: None }).unwrap();
    assert_eq!(kept.value.unwrap().expires_at_ms, kept_until, "an expiry is a time, not a countdown");
    assert_eq!(fetch(&mut b, "brief"), None, "expired while the runtime was down");
    assert_eq!(fetch(&mut b, "gone"), None);
    // This run's first agent may have the id the last run's had: agent and session keys stayed behind.
    assert_eq!(keys(&mut b, ""), [("g".into(), Scope::Global), ("kept".into(), Scope::Global)]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_audit_log_outlives_the_runtime_in_the_same_database() {
    let dir = TempDir::new("state-audit");
    let db = dir.0.join("state.redb");
    let denied_id = {
        let fx = durable("state-audit-1", &db);
        let mut a = fx.connect();
        let denied: Reply<ReadReply> =
            a.call(Opcode::READ, &ReadRequest { path: "/etc/shadow".into(), offset: 0, max_bytes: None });
        assert!(denied.is_err());
        let query = AuditQuery { category: Some("security".into()), ..Default::default() };
        let log = fx.runtime.audit_log(query).unwrap();
        log.iter().find(|e| e.event == "READ").expect("the denial is audited").id
    };
    let fx = durable("state-audit-2", &db);
    let log = fx.runtime.audit_log(AuditQuery { limit: 1000, ..Default::default() }).unwrap();
    let kept = log.iter().find(|e| e.id == denied_id).expect("the last run's denial is still on record");
    assert_eq!((kept.event.as_str(), kept.success), ("READ", false));
    // New entries continue the ids.
    let mut b = fx.connect();
    let _: Reply<ReadReply> =
        b.call(Opcode::READ, &ReadRequest { path: "/etc/shadow".into(), offset: 0, max_bytes: None });
    let newest = fx.runtime.audit_log(AuditQuery { limit: 1, ..Default::default() }).unwrap();
    assert!(newest[0].id > denied_id, "{newest:?}");
}

#[test]
fn a_corrupt_or_busy_database_is_a_clear_error_at_start() {
    let dir = TempDir::new("state-corrupt");
    let corrupt = dir.0.join("corrupt.redb");
    for garbage in [vec![0u8; 5000], b"not a database at all".repeat(300), vec![0xFF; 1]] {
        std::fs::write(&corrupt, &garbage).unwrap();
        let config = RuntimeConfig { state_path: Some(corrupt.clone()), ..RuntimeConfig::default() };
        let err = Runtime::start(config).err().expect("a corrupt file must not open");
        assert_eq!(err.code(), ErrorCode::Io);
        assert!(err.to_string().contains(&corrupt.display().to_string()), "{err}");
    }

    // A real database cut short: the library asserts on it; the runtime answers with an error.
    let cut = dir.0.join("cut.redb");
    drop(durable("state-corrupt-cut", &cut));
    let whole = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let config = RuntimeConfig { state_path: Some(cut.clone()), ..RuntimeConfig::default() };
    let err = Runtime::start(config).err().expect("a truncated file must not open");
    assert!(err.to_string().contains("cut.redb") && err.to_string().contains("damaged"), "{err}");

    let busy = dir.0.join("busy.redb");
    let config = RuntimeConfig { state_path: Some(busy.clone()), ..RuntimeConfig::default() };
    let first = Runtime::start(config.clone()).unwrap();
    let err = Runtime::start(config.clone()).err().expect("one runtime per database");
    assert!(err.to_string().contains("busy.redb"), "{err}");
    drop(first);
    Runtime::start(config).unwrap();
}
