//! HTTP through a real agent connection, against loopback fake servers: the allowlist, redirects,
//! limits, the address guard, async delivery and the audit trail.

mod common;
mod fake_server;

use std::time::Duration;

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::RuntimeConfig;
use common::{Client, Fixture};
use fake_server::{FakeServer, Reply};

/// A runtime whose guard lets agents reach loopback, as the fake servers live there.
fn fixture(tag: &str) -> Fixture {
    let mut config = RuntimeConfig::default();
    config.net.refuse_non_public = false;
    config.net.llm = None;
    Fixture::with_config(tag, Level::Unrestricted, config)
}

/// A connected agent allowed `methods` to `endpoints` only.
fn agent(fx: &Fixture, endpoints: &[String], methods: &[&str]) -> Client {
    let mut c = fx.connect();
    let permissions = serde_json::json!({ "network": endpoints, "http_methods": methods });
    let set = SetPermsRequest { permissions_json: Some(permissions.to_string()), ..Default::default() };
    let _: PermsReply = c.call(Opcode::SET_PERMS, &set).unwrap();
    c
}

fn get(url: &str) -> HttpRequest {
    HttpRequest { url: url.to_string(), method: "GET".into(), ..Default::default() }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.to_string(), value: value.to_string() }
}

fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply.headers.iter().find(|h| h.key == name).map(|h| h.value.as_str())
}

#[test]
fn an_allowed_request_round_trips_status_headers_and_body() {
    let server = FakeServer::start(|r| {
        Reply::new(201, format!("{} {} {}", r.method, r.path, String::from_utf8_lossy(&r.body)))
            .header("x-reply", "yes")
    });
    let fx = fixture("http-ok");
    let mut c = agent(&fx, &[server.endpoint()], &["GET", "POST"]);
    let request = HttpRequest {
        url: server.url("/items?q=1"),
        method: "post".into(),
        headers: vec![kv("X-Test", "abc"), kv("content-type", "text/plain")],
        body: b"payload".to_vec(),
        ..Default::default()
    };
    let reply: HttpReply = c.call(Opcode::HTTP, &request).unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, b"POST /items?q=1 payload");
    assert_eq!(header(&reply, "x-reply"), Some("yes"));
    assert_eq!(header(&reply, "content-length"), Some("23"));
    assert!(!reply.truncated);
    assert_eq!(reply.url, server.url("/items?q=1"));
    let seen = &server.requests()[0];
    assert_eq!(seen.header("x-test"), Some("abc"));
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert!(seen.header("user-agent").is_some_and(|ua| ua.starts_with("clove/")), "{:?}", seen.headers);

    // A status the server chose is a reply, not an error.
    let missing: HttpReply = c.call(Opcode::HTTP, &get(&server.url("/nope"))).unwrap();
    assert_eq!(missing.status, 201);
}

#[test]
fn hosts_ports_and_methods_outside_the_allowlist_are_refused_before_any_request() {
    let server = FakeServer::start(|_| Reply::new(200, "should not be reached"));
    let fx = fixture("http-denied");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let other_host = format!("http://127.0.0.2:{}/", server.port);
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(&other_host)).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains(&format!("127.0.0.2:{}", server.port)), "{}", err.message);
    // The allowlist names hosts as written: `localhost` is not `127.0.0.1`.
    let by_name = format!("http://localhost:{}/", server.port);
    assert_eq!(
        c.call::<_, HttpReply>(Opcode::HTTP, &get(&by_name)).unwrap_err().code,
        ErrorCode::PermissionDenied as u16
    );
    // Nor another port of an allowed host.
    let other_port = "http://127.0.0.1:1/";
    assert_eq!(
        c.call::<_, HttpReply>(Opcode::HTTP, &get(other_port)).unwrap_err().code,
        ErrorCode::PermissionDenied as u16
    );
    let delete = HttpRequest { method: "DELETE".into(), ..get(&server.url("/x")) };
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &delete).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains("method DELETE"), "{}", err.message);
    assert!(server.requests().is_empty());

    // Refusals are audited as security events.
    let query = AuditQuery { category: Some("security".into()), limit: 10, ..Default::default() };
    let log: AuditLogReply = c.call(Opcode::GET_AUDIT_LOG, &query).unwrap();
    assert!(log.entries.iter().filter(|e| e.event == "HTTP").count() >= 4, "{:?}", log.entries);
}

#[test]
fn an_agent_without_the_http_right_is_refused() {
    let fx = fixture("http-standard");
    let mut c = fx.connect();
    let set = SetPermsRequest { level: Some(Level::Standard), ..Default::default() };
    let _: PermsReply = c.call(Opcode::SET_PERMS, &set).unwrap();
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get("http://127.0.0.1:1/")).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains("http is not allowed"), "{}", err.message);
}

#[test]
fn bad_urls_and_runtime_headers_are_invalid() {
    let fx = fixture("http-invalid");
    let mut c = agent(&fx, &["*".to_string()], &["*"]);
    for url in ["ftp://127.0.0.1/", "no scheme", "http://user:pw@127.0.0.1/"] {
        let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(url)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument as u16, "{url}: {}", err.message);
    }
    let spoofed = HttpRequest { headers: vec![kv("Host", "internal.example")], ..get("http://127.0.0.1:1/") };
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &spoofed).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument as u16);
    assert!(err.message.contains("\"Host\" is set by the runtime"), "{}", err.message);
    let malformed = HttpRequest { headers: vec![kv("bad name", "v")], ..get("http://127.0.0.1:1/") };
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &malformed).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument as u16, "{}", err.message);
}

#[test]
fn a_redirect_to_a_denied_host_is_refused_and_never_followed() {
    let elsewhere = FakeServer::start(|_| Reply::new(200, "secret"));
    let target = elsewhere.url("/admin");
    let server = FakeServer::start(move |_| Reply::redirect(302, &target));
    let fx = fixture("http-redirect-denied");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(&server.url("/start"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains(&format!("redirect to {} refused", elsewhere.url("/admin"))), "{}", err.message);
    assert_eq!(server.requests().len(), 1);
    assert!(elsewhere.requests().is_empty());
}

#[test]
fn an_allowed_redirect_is_followed_as_a_browser_would() {
    let target = FakeServer::start(|r| Reply::new(200, format!("{} at {}", r.method, r.path)));
    let location = target.url("/landing");
    let relative = FakeServer::start(|r| match r.path.as_str() {
        "/old" => Reply::redirect(308, "/new"),
        _ => Reply::new(200, format!("{} {}", r.method, String::from_utf8_lossy(&r.body))),
    });
    let start = FakeServer::start(move |_| Reply::redirect(302, &location));
    let fx = fixture("http-redirect-ok");
    let mut c = agent(&fx, &[start.endpoint(), target.endpoint(), relative.endpoint()], &["GET", "POST"]);

    // 302 after a POST continues as a GET without body, and credentials stay with their origin.
    let post = HttpRequest {
        method: "POST".into(),
        headers: vec![kv("authorization", "Bearer s3cret"), kv("x-keep", "1")],
        body: b"form".to_vec(),
        ..get(&start.url("/login"))
    };
    let reply: HttpReply = c.call(Opcode::HTTP, &post).unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"GET at /landing"[..]));
    assert_eq!(reply.url, target.url("/landing"));
    let landed = &target.requests()[0];
    assert_eq!(landed.header("authorization"), None);
    assert_eq!(landed.header("x-keep"), Some("1"));
    assert!(landed.body.is_empty());

    // 308 keeps the method and the body; a relative Location stays on the same server.
    let post = HttpRequest { method: "POST".into(), body: b"kept".to_vec(), ..get(&relative.url("/old")) };
    let reply: HttpReply = c.call(Opcode::HTTP, &post).unwrap();
    assert_eq!(reply.body, b"POST kept");
    assert_eq!(reply.url, relative.url("/new"));

    // The audit log names where a request started and where it ended.
    let query = AuditQuery { category: Some("network".into()), limit: 10, ..Default::default() };
    let log: AuditLogReply = c.call(Opcode::GET_AUDIT_LOG, &query).unwrap();
    let details: serde_json::Value = serde_json::from_str(&log.entries[0].details_json).unwrap();
    assert_eq!(
        (details["method"].as_str(), details["url"].as_str()),
        (Some("POST"), Some(start.url("/login").as_str()))
    );
    assert_eq!(details["final_url"].as_str(), Some(target.url("/landing").as_str()));
}

#[test]
fn endless_redirects_stop() {
    let server = FakeServer::start(|_| Reply::redirect(302, "/again"));
    let fx = fixture("http-loop");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(&server.url("/"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded as u16);
    assert!(err.message.contains("more than 5 redirects"), "{}", err.message);
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn a_slow_server_times_out() {
    let server = FakeServer::start(|_| Reply::new(200, "late").after(Duration::from_secs(3)));
    let fx = fixture("http-timeout");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let request = HttpRequest { timeout_ms: Some(300), ..get(&server.url("/slow")) };
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &request).unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout as u16);
    assert!(err.message.contains("timed out after 300 ms"), "{}", err.message);
}

#[test]
fn a_large_body_is_truncated_at_the_cap() {
    let server = FakeServer::start(|_| Reply::new(200, vec![b'x'; 10_000]));
    let fx = fixture("http-cap");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let request = HttpRequest { max_response_bytes: Some(1000), ..get(&server.url("/big")) };
    let reply: HttpReply = c.call(Opcode::HTTP, &request).unwrap();
    assert_eq!((reply.body.len(), reply.truncated), (1000, true));
    let whole: HttpReply = c.call(Opcode::HTTP, &get(&server.url("/big"))).unwrap();
    assert_eq!((whole.body.len(), whole.truncated), (10_000, false));
}

#[test]
fn the_guard_refuses_loopback_by_default() {
    let server = FakeServer::start(|_| Reply::new(200, "internal"));
    let mut config = RuntimeConfig::default();
    config.net.llm = None;
    assert!(config.net.refuse_non_public);
    let fx = Fixture::with_config("http-guard", Level::Unrestricted, config);
    let mut c = agent(&fx, &[server.endpoint(), format!("localhost:{}", server.port)], &["GET"]);
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(&server.url("/"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains("127.0.0.1, a loopback address"), "{}", err.message);
    // A name is judged by where it resolves, not by how it reads.
    let by_name = format!("http://localhost:{}/", server.port);
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &get(&by_name)).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
    assert!(err.message.contains("localhost resolves to"), "{}", err.message);
    assert!(server.requests().is_empty());
}

#[test]
fn async_http_is_accepted_then_delivered_once() {
    let server = FakeServer::start(|_| Reply::new(200, "later"));
    let fx = fixture("http-async");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let request = HttpRequest { run_async: true, ..get(&server.url("/a")) };
    let accepted: Accepted = c.call(Opcode::HTTP, &request).unwrap();
    let results = c.await_async(Duration::from_secs(10));
    assert_eq!(results.len(), 1);
    let result = &results[0];
    assert_eq!((result.request_id, result.opcode, &result.error), (accepted.request_id, Opcode::HTTP as u8, &None));
    let reply: HttpReply = decode(&result.payload).unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"later"[..]));
    assert!(c.poll_async().is_empty());

    // The exchange is in the audit log, with what came back.
    let (entry, details) = c.audit_entry("network", "HTTP");
    assert_eq!((details["status"].as_u64(), details["url"].as_str()), (Some(200), Some(server.url("/a").as_str())));
    assert!(entry.success);
}

#[test]
fn async_results_too_big_for_one_frame_come_one_poll_at_a_time() {
    let server = FakeServer::start(|_| Reply::new(200, vec![b'y'; 600_000]));
    let fx = fixture("http-big-async");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    for _ in 0..2 {
        let _: Accepted = c.call(Opcode::HTTP, &HttpRequest { run_async: true, ..get(&server.url("/big")) }).unwrap();
    }
    let mut sizes = Vec::new();
    assert!(common::eventually(Duration::from_secs(10), || {
        let reply: AsyncPollReply = c.call(Opcode::ASYNC_POLL, &AsyncPollRequest { max: 10 }).unwrap();
        assert!(reply.results.len() <= 1, "two 600 KB results in one 1 MiB frame");
        sizes.extend(reply.results.iter().map(|r| decode::<HttpReply>(&r.payload).unwrap().body.len()));
        sizes.len() == 2
    }));
    assert_eq!(sizes, [600_000, 600_000]);
}

#[test]
fn a_busy_agent_is_limited_and_dropping_the_runtime_interrupts_its_requests() {
    let server = FakeServer::start(|_| Reply::new(200, "too late").after(Duration::from_secs(30)));
    let fx = fixture("http-busy");
    let mut c = agent(&fx, &[server.endpoint()], &["GET"]);
    let slow = HttpRequest { run_async: true, ..get(&server.url("/slow")) };
    for _ in 0..16 {
        let _: Accepted = c.call(Opcode::HTTP, &slow).unwrap();
    }
    let err = c.call::<_, HttpReply>(Opcode::HTTP, &slow).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded as u16);
    assert!(err.message.contains("16 http and think requests"), "{}", err.message);
    // Four workers are waiting on the server, twelve requests on a worker: none holds the runtime.
    let dropping = std::thread::spawn(move || drop(fx));
    assert!(common::eventually(Duration::from_secs(15), || dropping.is_finished()), "drop waited for the server");
}

#[test]
fn a_recorded_response_is_replayed_once_the_live_allowlist_agrees() {
    let server = FakeServer::start(|r| Reply::new(200, format!("live #{}", r.path)));
    let fx = fixture("http-record");
    let mut recorder = agent(&fx, &[server.endpoint()], &["GET"]);
    let start = RecordStartRequest { include_http: true, ..Default::default() };
    let _: RecordStatus = recorder.call(Opcode::RECORD_START, &start).unwrap();
    let live: HttpReply = recorder.call(Opcode::HTTP, &get(&server.url("/a"))).unwrap();
    let _: RecordStatus = recorder.call(Opcode::RECORD_STOP, &()).unwrap();
    let exported: RecordStatus = recorder.call(Opcode::RECORD_STATUS, &RecordStatusRequest { export: true }).unwrap();
    let recording = exported.recording_json.unwrap();

    let mut replayer = agent(&fx, &[server.endpoint()], &["GET"]);
    let req = ReplayStartRequest { recording_json: recording.clone(), source_agent_id: None };
    let _: ReplayStatus = replayer.call(Opcode::REPLAY_START, &req).unwrap();
    let replayed: HttpReply = replayer.call(Opcode::HTTP, &get(&server.url("/a"))).unwrap();
    assert_eq!(replayed, live);
    assert_eq!(server.requests().len(), 1, "the replay reached the server");

    // A recording gives an agent nothing its own allowlist refuses.
    let mut outsider = agent(&fx, &["elsewhere.example".to_string()], &["GET"]);
    let req = ReplayStartRequest { recording_json: recording, source_agent_id: None };
    let _: ReplayStatus = outsider.call(Opcode::REPLAY_START, &req).unwrap();
    let err = outsider.call::<_, HttpReply>(Opcode::HTTP, &get(&server.url("/a"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);
}
