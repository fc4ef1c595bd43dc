//! IPC and the event bus between agents on one runtime: names, mailboxes, RECV waits, broadcast,
//! subscriptions, custom events, and who may see which event.

mod common;

use std::time::{Duration, Instant};

use clove_core::policy::Level;
use clove_core::protocol::*;
use clove_core::runtime::SpawnSpec;
use common::{Client, Fixture};

fn hello(client: &mut Client) -> u64 {
    let reply: HelloReply = client.call(Opcode::HELLO, &Hello::default()).unwrap();
    reply.agent_id
}

fn register(client: &mut Client, name: &str) -> Result<RegisterReply, ErrorReply> {
    client.call(Opcode::REGISTER, &RegisterRequest { name: name.into() })
}

fn send(client: &mut Client, to: Target, message: serde_json::Value) -> Result<SendReply, ErrorReply> {
    client.call(Opcode::SEND, &SendRequest { to, message_json: message.to_string() })
}

fn recv(client: &mut Client, max: u32, wait_ms: Option<u32>) -> Vec<Message> {
    let reply: RecvReply = client.call(Opcode::RECV, &RecvRequest { max, wait_ms }).unwrap();
    reply.messages
}

fn subscribe(client: &mut Client, types: &[&str]) -> Vec<String> {
    let req = SubscribeRequest { event_types: types.iter().map(|t| t.to_string()).collect(), all: false };
    let reply: SubscribeReply = client.call(Opcode::SUBSCRIBE, &req).unwrap();
    reply.subscribed
}

fn poll(client: &mut Client) -> PollEventsReply {
    client.call(Opcode::POLL_EVENTS, &PollEventsRequest::default()).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn named_messages_are_routed_and_the_sender_cannot_be_forged() {
    let fx = Fixture::new("ipc-named", Level::Standard);
    let (mut main, mut worker, mut other) = (fx.connect(), fx.connect(), fx.connect());
    let (main_id, worker_id) = (hello(&mut main), hello(&mut worker));
    register(&mut main, "ipc-main").unwrap();
    assert_eq!(register(&mut worker, "ipc-worker").unwrap().agent_id, worker_id);
    // A name is one agent's; its owner may register it again.
    let taken = register(&mut other, "ipc-worker").unwrap_err();
    assert_eq!(taken.code, ErrorCode::Conflict as u16);
    assert!(taken.message.contains("already registered"), "{}", taken.message);
    register(&mut worker, "ipc-worker").unwrap();

    let task = serde_json::json!({ "task": "process", "data": [1, 2, 3], "nested": { "deep": [null, true] } });
    let sent = send(&mut main, Target::Name("ipc-worker".into()), task.clone()).unwrap();
    assert_eq!(sent.delivered_to, worker_id);
    let got = recv(&mut worker, 10, None);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].from, got[0].from_name.as_deref()), (main_id, Some("ipc-main")));
    assert_eq!(json(&got[0].message_json), task);

    // The worker answers whoever `from` names, by id.
    let answer = serde_json::json!({ "status": "processed", "original": task });
    send(&mut worker, Target::Id(got[0].from), answer.clone()).unwrap();
    let back = recv(&mut main, 10, None);
    assert_eq!((back.len(), back[0].from_name.as_deref()), (1, Some("ipc-worker")));
    assert_eq!(json(&back[0].message_json), answer);
    assert!(recv(&mut main, 10, None).is_empty(), "a message is delivered once");

    // Unknown names and ids, and text that is not JSON, are refused.
    let nobody = send(&mut main, Target::Name("nobody".into()), serde_json::json!(1)).unwrap_err();
    assert_eq!(nobody.code, ErrorCode::NotFound as u16);
    let stale = send(&mut main, Target::Id(worker_id + (1 << 32)), serde_json::json!(1)).unwrap_err();
    assert_eq!(stale.code, ErrorCode::NotFound as u16);
    let bad: Result<SendReply, _> =
        main.call(Opcode::SEND, &SendRequest { to: Target::Id(worker_id), message_json: "{oops".into() });
    assert_eq!(bad.unwrap_err().code, ErrorCode::InvalidArgument as u16);

    // A name goes with its connection.
    drop(worker);
    assert!(common::eventually(Duration::from_secs(5), || register(&mut other, "ipc-worker").is_ok()));
}

#[test]
fn broadcast_reaches_every_named_agent_but_the_sender() {
    let fx = Fixture::new("ipc-broadcast", Level::Standard);
    let mut agents: Vec<Client> = (0..4).map(|_| fx.connect()).collect();
    for (i, agent) in agents.iter_mut().take(3).enumerate() {
        register(agent, &format!("peer-{i}")).unwrap();
    }
    let req = BroadcastRequest { message_json: "\"hello all\"".into(), include_self: false };
    let reply: BroadcastReply = agents[0].call(Opcode::BROADCAST, &req).unwrap();
    assert_eq!((reply.delivered_count, reply.full.len()), (2, 0));
    assert!(recv(&mut agents[0], 10, None).is_empty());
    assert_eq!(recv(&mut agents[1], 10, None).len(), 1);
    assert!(recv(&mut agents[3], 10, None).is_empty(), "an unnamed agent is not in a broadcast");
    let with_self = BroadcastRequest { include_self: true, ..req };
    let reply: BroadcastReply = agents[0].call(Opcode::BROADCAST, &with_self).unwrap();
    assert_eq!(reply.delivered_count, 3);
    assert_eq!(json(&recv(&mut agents[0], 10, None)[0].message_json), "hello all");
}

#[test]
fn a_full_mailbox_refuses_the_sender_until_its_owner_reads() {
    let fx = Fixture::new("ipc-full", Level::Standard);
    let (mut sender, mut slow) = (fx.connect(), fx.connect());
    let slow_id = hello(&mut slow);
    let mut accepted = 0;
    let refusal = loop {
        match send(&mut sender, Target::Id(slow_id), serde_json::json!({ "n": accepted })) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 10_000, "the mailbox never filled");
    };
    assert_eq!(accepted, 256);
    assert_eq!(refusal.code, ErrorCode::LimitExceeded as u16);
    assert!(refusal.message.contains("must RECV"), "{}", refusal.message);
    // Oldest first, none lost, and room again once read.
    let first = recv(&mut slow, 100, None);
    assert_eq!(first.len(), 100);
    assert_eq!(json(&first[0].message_json)["n"], 0);
    assert_eq!(json(&first[99].message_json)["n"], 99);
    send(&mut sender, Target::Id(slow_id), serde_json::json!({ "n": "again" })).unwrap();
    assert_eq!(recv(&mut slow, 1000, None).len(), 157);
}

#[test]
fn recv_waits_for_the_first_message_or_its_deadline() {
    let fx = Fixture::new("ipc-wait", Level::Standard);
    let (mut waiter, mut sender) = (fx.connect(), fx.connect());
    let waiter_id = hello(&mut waiter);
    let started = Instant::now();
    assert!(recv(&mut waiter, 10, Some(300)).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());

    let request = waiter.send(Opcode::RECV, &RecvRequest { max: 10, wait_ms: Some(10_000) });
    std::thread::sleep(Duration::from_millis(100));
    let sent_at = Instant::now();
    send(&mut sender, Target::Id(waiter_id), serde_json::json!("wake up")).unwrap();
    let (header, payload) = waiter.read_frame().unwrap();
    assert!(sent_at.elapsed() < Duration::from_secs(5), "the wait ended with the message, not its deadline");
    assert_eq!(header.request_id, request);
    let reply: RecvReply = decode(&payload).unwrap();
    assert_eq!(json(&reply.messages[0].message_json), "wake up");
    // The connection still answers in order afterwards.
    assert_eq!(waiter.noop(b"after"), b"after");
}

#[test]
fn custom_events_reach_subscribers_and_runtime_types_cannot_be_forged() {
    let fx = Fixture::new("bus-custom", Level::Standard);
    let (mut listener, mut emitter, mut bystander) = (fx.connect(), fx.connect(), fx.connect());
    let emitter_id = hello(&mut emitter);
    assert_eq!(subscribe(&mut listener, &["CUSTOM"]), ["CUSTOM"]);
    subscribe(&mut bystander, &["deploy_done"]);
    let emit = |client: &mut Client, kind: &str, data: &str| -> Result<EmitReply, ErrorReply> {
        client.call(Opcode::EMIT, &EmitRequest { event_type: kind.into(), data_json: data.into() })
    };
    assert_eq!(emit(&mut emitter, "deploy_done", r#"{"version":3}"#).unwrap().delivered, 2);
    assert_eq!(emit(&mut emitter, "other_thing", "1").unwrap().delivered, 1);
    let events = poll(&mut listener).events;
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].event_type.as_str(), events[0].custom_type.as_deref()), ("CUSTOM", Some("deploy_done")));
    assert_eq!(events[0].source_agent_id, emitter_id);
    assert_eq!(json(&events[0].data_json), serde_json::json!({ "version": 3 }));
    assert_eq!(poll(&mut bystander).events.len(), 1, "a subscription by custom name gets only that name");
    assert!(poll(&mut listener).events.is_empty(), "an event is delivered once");

    let forged = emit(&mut emitter, "AGENT_EXITED", "{}").unwrap_err();
    assert_eq!(forged.code, ErrorCode::PermissionDenied as u16);
    // The refusal is itself an event, for the agent that made it.
    subscribe(&mut emitter, &["SYSCALL_BLOCKED"]);
    emit(&mut emitter, "STATE_CHANGED", "{}").unwrap_err();
    let blocked = poll(&mut emitter).events;
    assert_eq!(blocked.len(), 1);
    assert_eq!(json(&blocked[0].data_json)["syscall"], "EMIT");
    assert!(poll(&mut listener).events.is_empty(), "a standard agent does not see another's blocked syscalls");

    // Unsubscribing stops delivery.
    let reply: SubscribeReply =
        listener.call(Opcode::UNSUBSCRIBE, &SubscribeRequest { event_types: vec![], all: true }).unwrap();
    assert!(reply.subscribed.is_empty());
    emit(&mut emitter, "deploy_done", "{}").unwrap();
    assert!(poll(&mut listener).events.is_empty());
}

#[test]
fn message_received_goes_to_the_recipient_only() {
    let fx = Fixture::new("bus-message", Level::Standard);
    let (mut a, mut b, mut c) = (fx.connect(), fx.connect(), fx.connect());
    let (a_id, b_id) = (hello(&mut a), hello(&mut b));
    subscribe(&mut b, &["MESSAGE_RECEIVED"]);
    subscribe(&mut c, &["*"]);
    send(&mut a, Target::Id(b_id), serde_json::json!("hi")).unwrap();
    let events = poll(&mut b).events;
    assert_eq!(events.len(), 1);
    assert_eq!(json(&events[0].data_json)["from"], a_id);
    assert!(poll(&mut c).events.is_empty());
}

#[test]
fn lifecycle_events_reach_agents_that_may_observe_them() {
    let fx = Fixture::new("bus-lifecycle", Level::Unrestricted);
    let mut operator = fx.connect();
    subscribe(&mut operator, &["AGENT_SPAWNED", "AGENT_EXITED"]);
    let mut spec = SpawnSpec::new("short", vec!["/bin/sh".into(), "-c".into(), "exit 3".into()]);
    spec.stdio = clove_core::runtime::AgentStdio::Null;
    let id = fx.runtime.spawn(spec).unwrap();
    fx.runtime.wait(id, Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    assert!(common::eventually(Duration::from_secs(5), || {
        seen.extend(poll(&mut operator).events);
        seen.len() >= 2
    }));
    assert_eq!(seen[0].event_type, "AGENT_SPAWNED");
    assert_eq!(json(&seen[0].data_json)["name"], "short");
    assert_eq!(seen[1].event_type, "AGENT_EXITED");
    assert_eq!(json(&seen[1].data_json)["exit_code"], 3);
    assert_eq!(seen[1].source_agent_id, id.0);
}

#[test]
fn a_standard_agent_does_not_see_unrelated_lifecycles() {
    let fx = Fixture::new("bus-private", Level::Standard);
    let mut nosy = fx.connect();
    subscribe(&mut nosy, &["*"]);
    let mut spec = SpawnSpec::new("private", vec!["/bin/true".into()]);
    spec.stdio = clove_core::runtime::AgentStdio::Null;
    let id = fx.runtime.spawn(spec).unwrap();
    fx.runtime.wait(id, Some(Duration::from_secs(10))).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(poll(&mut nosy).events.is_empty());
}

#[test]
fn a_full_event_queue_drops_the_oldest_and_says_how_many() {
    let fx = Fixture::new("bus-overflow", Level::Standard);
    let (mut slow, mut emitter) = (fx.connect(), fx.connect());
    subscribe(&mut slow, &["tick"]);
    for n in 0..1030 {
        let _: EmitReply =
            emitter.call(Opcode::EMIT, &EmitRequest { event_type: "tick".into(), data_json: n.to_string() }).unwrap();
    }
    let reply: PollEventsReply = slow.call(Opcode::POLL_EVENTS, &PollEventsRequest { max: 5000 }).unwrap();
    assert_eq!((reply.events.len(), reply.dropped), (1024, 6));
    assert_eq!(reply.events[0].data_json, "6");
    assert_eq!(poll(&mut slow).dropped, 0, "the count is reported once");
}

#[test]
fn the_host_gets_the_bus_events_it_subscribed_to() {
    let fx = Fixture::new("bus-host", Level::Standard);
    assert_eq!(fx.runtime.subscribe(&["deploy_done", "SYSCALL_BLOCKED"]).unwrap(), ["SYSCALL_BLOCKED", "deploy_done"]);
    let mut agent = fx.connect();
    let id = hello(&mut agent);
    let emit = |client: &mut Client, kind: &str| {
        let _: Result<EmitReply, ErrorReply> =
            client.call(Opcode::EMIT, &EmitRequest { event_type: kind.into(), data_json: "[1]".into() });
    };
    emit(&mut agent, "other");
    emit(&mut agent, "deploy_done");
    emit(&mut agent, "AGENT_EXITED");
    let mut seen = Vec::new();
    while let Some(event) = fx.runtime.next_event(Some(Duration::from_secs(5))) {
        if let clove_core::runtime::EventKind::Bus(bus) = event.kind {
            assert_eq!(event.agent_id.0, id);
            seen.push((bus.event_type, bus.custom_type, bus.data_json));
            if seen.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(seen[0], ("CUSTOM".into(), Some("deploy_done".into()), "[1]".into()));
    assert_eq!(seen[1].0, "SYSCALL_BLOCKED");
    assert_eq!(fx.runtime.unsubscribe(&["deploy_done"]).unwrap(), ["SYSCALL_BLOCKED"]);
}
