//! THINK through a real agent connection: each provider's wire format against a loopback fake of
//! it (the request it receives and the reply the agent gets), the host handler, quotas, async.

mod common;
mod fake_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::{ProviderConfig, ProviderKind, RuntimeConfig, ThinkAnswer, ThinkCall, ThinkHandler};
use common::{Client, Fixture};
use fake_server::{FakeServer, Reply};
use serde_json::json;

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0, 1, 2, 0xff];
/// `PNG` in base64.
const PNG_BASE64: &str = "iVBORwABAv8=";

fn fixture(tag: &str, provider: Option<ProviderConfig>) -> Fixture {
    let mut config = RuntimeConfig::default();
    config.net.llm = provider;
    Fixture::with_config(tag, Level::Standard, config)
}

fn provider(kind: ProviderKind, server: &FakeServer, base_path: &str) -> ProviderConfig {
    let mut config = ProviderConfig::new(kind);
    config.base_url = server.url(base_path);
    config.api_key = Some("test-key".into());
    config.model = "configured-model".into();
    config
}

/// Everything a THINK can carry.
fn full_request() -> ThinkRequest {
    ThinkRequest {
        prompt: "What is in the picture?".into(),
        image: Some(ThinkImage { data: PNG.to_vec(), mime_type: "image/png".into() }),
        system_instruction: Some("Answer in one word.".into()),
        temperature_milli: Some(700),
        model: None,
        max_tokens: Some(50),
        thinking_level: None,
        run_async: false,
    }
}

fn prompt(text: &str) -> ThinkRequest {
    ThinkRequest { prompt: text.into(), ..Default::default() }
}

#[test]
fn openai_chat_completions() {
    let server = FakeServer::start(|_| {
        Reply::json(
            200,
            json!({
                "model": "configured-model-2024",
                "choices": [{ "message": { "role": "assistant", "content": "A logo." } }],
                "usage": { "prompt_tokens": 31, "completion_tokens": 3 },
            }),
        )
    });
    let fx = fixture("think-openai", Some(provider(ProviderKind::OpenAi, &server, "/v1")));
    let reply: ThinkReply = fx.connect().call(Opcode::THINK, &full_request()).unwrap();
    assert_eq!(
        reply,
        ThinkReply {
            text: "A logo.".into(),
            model: "configured-model-2024".into(),
            provider: "openai".into(),
            input_tokens: 31,
            output_tokens: 3,
        }
    );
    let seen = &server.requests()[0];
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(seen.header("authorization"), Some("Bearer test-key"));
    let body = seen.json();
    assert_eq!(body["model"], "configured-model");
    assert_eq!(body["messages"][0], json!({ "role": "system", "content": "Answer in one word." }));
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["messages"][1]["content"][0], json!({ "type": "text", "text": "What is in the picture?" }));
    let image_url = format!("data:image/png;base64,{PNG_BASE64}");
    assert_eq!(body["messages"][1]["content"][1], json!({ "type": "image_url", "image_url": { "url": image_url } }));
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["max_tokens"], 50);
}

#[test]
fn gemini_generate_content() {
    let server = FakeServer::start(|_| {
        Reply::json(
            200,
            json!({
                "candidates": [{ "content": { "role": "model", "parts": [
                    { "text": "thinking it over", "thought": true },
                    { "text": "A " },
                    { "text": "logo." },
                ] } }],
                "usageMetadata": { "promptTokenCount": 40, "candidatesTokenCount": 4, "thoughtsTokenCount": 6 },
                "modelVersion": "gemini-other-001",
            }),
        )
    });
    let fx = fixture("think-gemini", Some(provider(ProviderKind::Gemini, &server, "")));
    let request =
        ThinkRequest { model: Some("gemini-other".into()), thinking_level: Some("low".into()), ..full_request() };
    let reply: ThinkReply = fx.connect().call(Opcode::THINK, &request).unwrap();
    assert_eq!(
        (reply.text.as_str(), reply.model.as_str(), reply.provider.as_str()),
        ("A logo.", "gemini-other-001", "gemini")
    );
    assert_eq!((reply.input_tokens, reply.output_tokens), (40, 10));
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1beta/models/gemini-other:generateContent");
    assert_eq!(seen.header("x-goog-api-key"), Some("test-key"));
    let body = seen.json();
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(body["contents"][0]["parts"][0], json!({ "text": "What is in the picture?" }));
    assert_eq!(
        body["contents"][0]["parts"][1],
        json!({ "inlineData": { "mimeType": "image/png", "data": PNG_BASE64 } })
    );
    assert_eq!(body["systemInstruction"], json!({ "parts": [{ "text": "Answer in one word." }] }));
    assert_eq!(
        body["generationConfig"],
        json!({ "temperature": 0.7, "maxOutputTokens": 50, "thinkingConfig": { "thinkingLevel": "low" } })
    );

    // The model names a path on the provider's host: it must stay a name.
    let sneaky = ThinkRequest { model: Some("../../v1/files?x=".into()), ..prompt("hi") };
    let err = fx.connect().call::<_, ThinkReply>(Opcode::THINK, &sneaky).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument as u16, "{}", err.message);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn anthropic_messages() {
    let server = FakeServer::start(|_| {
        Reply::json(
            200,
            json!({
                "model": "configured-model-20250101",
                "content": [{ "type": "text", "text": "A logo." }],
                "usage": { "input_tokens": 55, "output_tokens": 5 },
            }),
        )
    });
    let fx = fixture("think-anthropic", Some(provider(ProviderKind::Anthropic, &server, "")));
    let reply: ThinkReply = fx.connect().call(Opcode::THINK, &full_request()).unwrap();
    assert_eq!((reply.text.as_str(), reply.provider.as_str()), ("A logo.", "anthropic"));
    assert_eq!((reply.input_tokens, reply.output_tokens), (55, 5));
    let seen = &server.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some("test-key"));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    let body = seen.json();
    assert_eq!(body["model"], "configured-model");
    assert_eq!(body["system"], "Answer in one word.");
    assert_eq!((body["max_tokens"].as_u64(), body["temperature"].as_f64()), (Some(50), Some(0.7)));
    let content = &body["messages"][0]["content"];
    assert_eq!(
        content[0],
        json!({ "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": PNG_BASE64 } })
    );
    assert_eq!(content[1], json!({ "type": "text", "text": "What is in the picture?" }));

    // Anthropic requires max_tokens: one is sent when the agent gives none.
    let _: ThinkReply = fx.connect().call(Opcode::THINK, &prompt("hi")).unwrap();
    assert_eq!(server.requests()[1].json()["max_tokens"], 4096);
}

#[test]
fn a_provider_error_reaches_the_agent_with_its_message() {
    let server = FakeServer::start(|_| Reply::json(401, json!({ "error": { "message": "invalid api key" } })));
    let fx = fixture("think-provider-error", Some(provider(ProviderKind::OpenAi, &server, "/v1")));
    let err = fx.connect().call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!(err.code, ErrorCode::Io as u16);
    assert_eq!(err.message, "openai answered HTTP 401: invalid api key");
}

#[test]
fn without_a_provider_think_says_how_to_configure_one() {
    let fx = fixture("think-none", None);
    let mut c = fx.connect();
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported as u16);
    for needle in ["GEMINI_API_KEY", "OPENAI_BASE_URL", "host think handler"] {
        assert!(err.message.contains(needle), "{}", err.message);
    }
    let empty = c.call::<_, ThinkReply>(Opcode::THINK, &ThinkRequest::default());
    assert_eq!(empty.unwrap_err().code, ErrorCode::Unsupported as u16);
}

/// A host handler that records its calls and answers with their prompt reversed.
fn recording_handler() -> (ThinkHandler, Arc<Mutex<Vec<ThinkCall>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let handler: ThinkHandler = Arc::new(move |call: &ThinkCall| {
        seen.lock().unwrap().push(call.clone());
        if call.prompt == "fail" {
            return Err("the host has no model for that".to_string());
        }
        Ok(ThinkAnswer {
            text: call.prompt.chars().rev().collect(),
            model: "host-model".into(),
            input_tokens: 20,
            output_tokens: 10,
        })
    });
    (handler, calls)
}

#[test]
fn the_host_handler_answers_through_the_rust_api() {
    let fx = fixture("think-host", None);
    let (handler, calls) = recording_handler();
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    let hello: HelloReply = c.call(Opcode::HELLO, &Hello::default()).unwrap();
    assert!(hello.features.iter().any(|f| f == "think") && hello.features.iter().any(|f| f == "http"));
    let request = ThinkRequest { model: Some("asked-model".into()), ..full_request() };
    let reply: ThinkReply = c.call(Opcode::THINK, &request).unwrap();
    assert_eq!(
        reply,
        ThinkReply {
            text: "?erutcip eht ni si tahW".into(),
            model: "host-model".into(),
            provider: "host".into(),
            input_tokens: 20,
            output_tokens: 10,
        }
    );
    let call = calls.lock().unwrap()[0].clone();
    assert_eq!((call.agent_id.0, call.agent_name.as_str()), (hello.agent_id, hello.name.as_str()));
    assert_eq!(call.image, Some(ThinkImage { data: PNG.to_vec(), mime_type: "image/png".into() }));
    assert_eq!((call.system_instruction.as_deref(), call.temperature), (Some("Answer in one word."), Some(0.7)));
    assert_eq!((call.model.as_deref(), call.max_tokens), (Some("asked-model"), Some(50)));
    // The handler runs on a worker, never the reactor; the agent is served meanwhile.
    assert_eq!(c.noop(b"still here"), b"still here");

    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("fail")).unwrap_err();
    assert_eq!(err.code, ErrorCode::Io as u16);
    assert_eq!(err.message, "the host think handler failed: the host has no model for that");

    fx.runtime.set_think_handler(None).unwrap();
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported as u16);
}

#[test]
fn a_panicking_handler_answers_an_error_and_the_runtime_lives_on() {
    let fx = fixture("think-panic", None);
    let handler: ThinkHandler = Arc::new(|_: &ThinkCall| panic!("host bug"));
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::Internal as u16, "the host think handler panicked"));
    assert_eq!(c.noop(b"alive"), b"alive");
}

#[test]
fn an_answer_too_large_for_a_reply_is_refused_not_sent() {
    let fx = fixture("think-huge", None);
    let handler: ThinkHandler =
        Arc::new(|_: &ThinkCall| Ok(ThinkAnswer { text: "x".repeat(2 << 20), ..Default::default() }));
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded as u16);
    assert!(err.message.starts_with("the THINK answer of 2097"), "{}", err.message);
    assert_eq!(c.noop(b"alive"), b"alive");
}

fn set_permissions(c: &mut Client, permissions: serde_json::Value) {
    let set = SetPermsRequest { permissions_json: Some(permissions.to_string()), ..Default::default() };
    let _: PermsReply = c.call(Opcode::SET_PERMS, &set).unwrap();
}

#[test]
fn quotas_limit_calls_and_tokens() {
    let fx = fixture("think-quota", None);
    let (handler, calls) = recording_handler();
    fx.runtime.set_think_handler(Some(handler)).unwrap();

    let mut c = fx.connect();
    set_permissions(&mut c, json!({ "llm": { "max_calls": 2 } }));
    for _ in 0..2 {
        let _: ThinkReply = c.call(Opcode::THINK, &prompt("hi")).unwrap();
    }
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::LimitExceeded as u16, "llm quota: 2 of 2 calls used"));

    // Each answer costs 30 tokens: the first fits in 45, which also caps what the second may
    // produce; after the second nothing is left.
    let mut c = fx.connect();
    set_permissions(&mut c, json!({ "llm": { "max_tokens": 45 } }));
    let _: ThinkReply = c.call(Opcode::THINK, &ThinkRequest { max_tokens: Some(100), ..prompt("one") }).unwrap();
    let _: ThinkReply = c.call(Opcode::THINK, &ThinkRequest { max_tokens: Some(100), ..prompt("two") }).unwrap();
    let seen: Vec<Option<u32>> = calls.lock().unwrap().iter().skip(2).map(|c| c.max_tokens).collect();
    assert_eq!(seen, [Some(45), Some(15)]);
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("three")).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::LimitExceeded as u16, "llm quota: 60 of 45 tokens used"));
    let perms: PermsReply = c.call(Opcode::GET_PERMS, &()).unwrap();
    let llm = &serde_json::from_str::<serde_json::Value>(&perms.permissions_json).unwrap()["llm"];
    assert_eq!(*llm, json!({ "max_tokens": 45, "max_calls": null, "tokens_used": 60, "calls_made": 2 }));

    // Without the think right, nothing is asked.
    let set =
        SetPermsRequest { permissions_json: Some(json!({ "can_think": false }).to_string()), ..Default::default() };
    let _: PermsReply = c.call(Opcode::SET_PERMS, &set).unwrap();
    let err = c.call::<_, ThinkReply>(Opcode::THINK, &prompt("hi")).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16);
}

#[test]
fn async_think_is_accepted_then_delivered_once() {
    let fx = fixture("think-async", None);
    let (handler, _) = recording_handler();
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    let accepted: Accepted = c.call(Opcode::THINK, &ThinkRequest { run_async: true, ..prompt("abc") }).unwrap();
    let results = c.await_async(Duration::from_secs(10));
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].request_id, results[0].opcode), (accepted.request_id, Opcode::THINK as u8));
    let reply: ThinkReply = decode(&results[0].payload).unwrap();
    assert_eq!((reply.text.as_str(), reply.provider.as_str()), ("cba", "host"));
    assert!(c.poll_async().is_empty());

    let (_, details) = c.audit_entry("network", "THINK");
    assert_eq!((details["provider"].as_str(), details["output_tokens"].as_u64()), (Some("host"), Some(10)));
}

#[test]
fn replacing_the_handler_waits_for_calls_in_flight() {
    let fx = fixture("think-replace", None);
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler: ThinkHandler = Arc::new(move |_: &ThinkCall| {
        entered_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(ThinkAnswer { text: "slow".into(), ..Default::default() })
    });
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    let id = c.send(Opcode::THINK, &prompt("hi"));
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let replaced = std::thread::scope(|s| {
        let replacing = s.spawn(|| fx.runtime.set_think_handler(None));
        std::thread::sleep(Duration::from_millis(100));
        let waiting = !replacing.is_finished();
        release_tx.send(()).unwrap();
        (waiting, replacing.join().unwrap())
    });
    assert!(replaced.0, "set_think_handler returned while the old handler was running");
    replaced.1.unwrap();
    let (header, payload) = c.read_frame().unwrap();
    assert_eq!(header.request_id, id);
    assert_eq!(decode::<ThinkReply>(&payload).unwrap().text, "slow");
}

#[test]
fn a_recorded_think_is_replayed_without_asking_anyone() {
    let fx = fixture("think-record", None);
    let (handler, calls) = recording_handler();
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut recorder = fx.connect();
    let start = RecordStartRequest { include_think: true, ..Default::default() };
    let _: RecordStatus = recorder.call(Opcode::RECORD_START, &start).unwrap();
    let live: ThinkReply = recorder.call(Opcode::THINK, &prompt("abc")).unwrap();
    let _: Accepted = recorder.call(Opcode::THINK, &ThinkRequest { run_async: true, ..prompt("xyz") }).unwrap();
    assert!(common::eventually(Duration::from_secs(10), || {
        let status: RecordStatus = recorder.call(Opcode::RECORD_STATUS, &RecordStatusRequest::default()).unwrap();
        status.entries == 2
    }));
    let _: RecordStatus = recorder.call(Opcode::RECORD_STOP, &()).unwrap();
    let exported: RecordStatus = recorder.call(Opcode::RECORD_STATUS, &RecordStatusRequest { export: true }).unwrap();
    let recording = exported.recording_json.unwrap();
    assert!(recording.contains("\"cba\"") && recording.contains("\"zyx\""), "{recording}");

    // No handler now: the answers can only come from the recording.
    fx.runtime.set_think_handler(None).unwrap();
    let mut replayer = fx.connect();
    let req = ReplayStartRequest { recording_json: recording, source_agent_id: None };
    let _: ReplayStatus = replayer.call(Opcode::REPLAY_START, &req).unwrap();
    let replayed: ThinkReply = replayer.call(Opcode::THINK, &prompt("abc")).unwrap();
    assert_eq!(replayed, live);
    let accepted: Accepted = replayer.call(Opcode::THINK, &ThinkRequest { run_async: true, ..prompt("xyz") }).unwrap();
    let polled: AsyncPollReply = replayer.call(Opcode::ASYNC_POLL, &AsyncPollRequest { max: 10 }).unwrap();
    assert_eq!(polled.results[0].request_id, accepted.request_id);
    assert_eq!(decode::<ThinkReply>(&polled.results[0].payload).unwrap().text, "zyx");
    assert_eq!(calls.lock().unwrap().len(), 2, "the replay asked the handler");
}

/// A handler that takes `each` per call and records, in order, which agent's call it served.
fn slow_handler(each: Duration) -> (ThinkHandler, Arc<Mutex<Vec<u64>>>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let handler: ThinkHandler = Arc::new(move |call: &ThinkCall| {
        seen.lock().unwrap().push(call.agent_id.0);
        std::thread::sleep(each);
        Ok(ThinkAnswer { text: "ok".into(), model: "m".into(), input_tokens: 10, output_tokens: 10 })
    });
    (handler, order)
}

/// Sends `n` async THINKs of the same size and returns how many were accepted.
fn flood(c: &mut Client, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let req = ThinkRequest { run_async: true, ..prompt("same size") };
            c.call::<_, Accepted>(Opcode::THINK, &req).is_ok()
        })
        .count()
}

fn agent_id(c: &mut Client) -> u64 {
    let hello: HelloReply = c.call(Opcode::HELLO, &Hello::default()).unwrap();
    hello.agent_id
}

#[test]
fn a_flood_of_calls_from_one_agent_does_not_make_another_wait_behind_it() {
    let mut config = RuntimeConfig::default();
    config.net.llm = None;
    config.net.think_workers = 1;
    let fx = Fixture::with_config("think-fair", Level::Standard, config);
    let (handler, order) = slow_handler(Duration::from_millis(30));
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let (mut greedy, mut light) = (fx.connect(), fx.connect());
    let light_id = agent_id(&mut light);
    assert_eq!(flood(&mut greedy, 10), 10);
    assert_eq!(flood(&mut light, 1), 1);
    assert!(common::eventually(Duration::from_secs(20), || order.lock().unwrap().len() == 11));
    let order = order.lock().unwrap().clone();
    // In arrival order the light agent's call would be served 11th. By virtual token counters it
    // goes once the greedy agent has had its share: after the call already running, and at most
    // one more on a tie.
    let position = order.iter().position(|&who| who == light_id).expect("the light call ran");
    assert!(position <= 2, "the light agent's call was served {}th of 11: {order:?}", position + 1);
}

#[test]
fn in_arrival_order_calls_are_served_first_come_first_served() {
    let mut config = RuntimeConfig::default();
    config.net.llm = None;
    config.net.think_workers = 1;
    config.net.think_order = clove_core::runtime::ThinkOrder::Arrival;
    let fx = Fixture::with_config("think-fifo", Level::Standard, config);
    let (handler, order) = slow_handler(Duration::from_millis(5));
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let (mut first, mut second) = (fx.connect(), fx.connect());
    let second_id = agent_id(&mut second);
    assert_eq!(flood(&mut first, 5), 5);
    assert_eq!(flood(&mut second, 1), 1);
    assert!(common::eventually(Duration::from_secs(20), || order.lock().unwrap().len() == 6));
    assert_eq!(order.lock().unwrap().iter().position(|&who| who == second_id), Some(5));
}

#[test]
fn a_requests_per_minute_cap_holds_calls_until_their_window() {
    let mut config = RuntimeConfig::default();
    config.net.llm = None;
    config.net.think_requests_per_min = Some(2);
    let fx = Fixture::with_config("think-rpm", Level::Standard, config);
    let (handler, order) = slow_handler(Duration::ZERO);
    fx.runtime.set_think_handler(Some(handler)).unwrap();
    let mut c = fx.connect();
    assert_eq!(flood(&mut c, 3), 3);
    assert!(common::eventually(Duration::from_secs(5), || order.lock().unwrap().len() == 2));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(order.lock().unwrap().len(), 2, "the third call waits for the minute's window");
}
