//! Payloads of the services between agents: IPC mailboxes (REGISTER, SEND, RECV, BROADCAST) and
//! the event bus (SUBSCRIBE, UNSUBSCRIBE, POLL_EVENTS, EMIT). Messages and event data are JSON text.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::Target;

/// REGISTER: take a name other agents can SEND to. It is released when the agent's connection
/// ends; registering again replaces the agent's previous name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub agent_id: u64,
    pub name: String,
}

/// SEND: one message to one agent, named by id (as SPAWN returned it) or by registered name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub to: Target,
    pub message_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    pub delivered_to: u64,
}

/// RECV: take up to `max` messages (10 when 0), oldest first. With `wait_ms`, an empty mailbox
/// answers when the first message arrives or when the wait is over, whichever is first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecvRequest {
    pub max: u32,
    pub wait_ms: Option<u32>,
}

/// A delivered message. `from` is set by the runtime from the sender's connection: it cannot be
/// forged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: u64,
    /// The sender's registered name when it sent, if it had one.
    pub from_name: Option<String>,
    pub message_json: String,
    /// How long the message waited in the mailbox.
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvReply {
    pub messages: Vec<Message>,
}

/// BROADCAST: one message to every agent that registered a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRequest {
    pub message_json: String,
    pub include_self: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastReply {
    pub delivered_count: u32,
    /// Named agents whose mailbox was full: they did not get the message.
    pub full: Vec<u64>,
}

/// SUBSCRIBE and UNSUBSCRIBE. A type is one of the seed's names (`AGENT_SPAWNED`, `STATE_CHANGED`,
/// `CUSTOM`, ...), a custom event's own name, or `*` for everything. UNSUBSCRIBE with `all` drops
/// every subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubscribeRequest {
    pub event_types: Vec<String>,
    pub all: bool,
}

/// The caller's subscriptions after the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeReply {
    pub subscribed: Vec<String>,
}

/// POLL_EVENTS: take up to `max` queued events (100 when 0), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PollEventsRequest {
    pub max: u32,
}

/// An event as an agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusEvent {
    /// The seed's type name: `AGENT_EXITED`, `MESSAGE_RECEIVED`, `CUSTOM`, ...
    pub event_type: String,
    /// For `CUSTOM`: the name its emitter gave it.
    pub custom_type: Option<String>,
    pub data_json: String,
    /// The agent the event is about or came from; 0 for the runtime or the host.
    pub source_agent_id: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollEventsReply {
    pub events: Vec<BusEvent>,
    /// Events this agent's full queue dropped (the oldest first) since its last poll.
    pub dropped: u64,
}

/// EMIT: a `CUSTOM` event named `event_type` (or unnamed, for `CUSTOM`) to every subscriber. The
/// runtime's own types cannot be emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitRequest {
    pub event_type: String,
    pub data_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitReply {
    /// How many subscribers queued it.
    pub delivered: u32,
}
