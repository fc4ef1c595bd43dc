//! IPC between agents: registered names and bounded mailboxes (REGISTER, SEND, RECV, BROADCAST).
//!
//! A sender is known by its connection, so `from` cannot be forged. A full mailbox refuses the
//! message with an error to the sender rather than growing: the receiver must RECV first. A name
//! and a mailbox belong to a connection and go with it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::bus::{Audience, EventType};
use super::reactor::{Reactor, Timer};
use super::{AgentId, Result, RuntimeError};
use crate::protocol::*;

/// Messages one mailbox holds before SEND is refused.
pub(super) const MAILBOX_MESSAGES: usize = 256;
/// Bytes of message text one mailbox holds before SEND is refused.
pub(super) const MAILBOX_BYTES: usize = 4 << 20;
const MAX_NAME_LEN: usize = 128;
/// Messages one RECV takes when it does not say.
const DEFAULT_RECV: usize = 10;

/// Registered names, both ways.
#[derive(Default)]
pub(super) struct Names {
    by_name: BTreeMap<String, AgentId>,
    by_agent: BTreeMap<AgentId, String>,
}

impl Names {
    pub fn of(&self, id: AgentId) -> Option<&str> {
        self.by_agent.get(&id).map(String::as_str)
    }

    fn release(&mut self, id: AgentId) {
        if let Some(name) = self.by_agent.remove(&id) {
            self.by_name.remove(&name);
        }
    }
}

struct Queued {
    from: AgentId,
    from_name: Option<String>,
    message_json: String,
    at: Instant,
}

/// A RECV answered when the first message arrives (or its wait ends).
struct WaitingRecv {
    request_id: u32,
    max: usize,
}

#[derive(Default)]
pub(super) struct Mailbox {
    queue: VecDeque<Queued>,
    bytes: usize,
    waiting: Option<WaitingRecv>,
}

impl Mailbox {
    fn take(&mut self, max: usize) -> RecvReply {
        let now = Instant::now();
        let take = max.min(self.queue.len());
        let messages = self
            .queue
            .drain(..take)
            .map(|q| {
                self.bytes -= q.message_json.len();
                Message {
                    from: q.from.0,
                    from_name: q.from_name,
                    message_json: q.message_json,
                    age_ms: now.saturating_duration_since(q.at).as_millis() as u64,
                }
            })
            .collect();
        RecvReply { messages }
    }
}

fn check_json(text: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| RuntimeError::InvalidArgument(format!("the message is not JSON: {e}")))
}

impl Reactor {
    pub(super) fn register_name(&mut self, id: AgentId, req: RegisterRequest) -> Result<RegisterReply> {
        let name = req.name;
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(RuntimeError::InvalidArgument(format!(
                "a name is 1 to {MAX_NAME_LEN} bytes without control characters"
            )));
        }
        match self.names.by_name.get(&name) {
            Some(&owner) if owner != id => {
                return Err(RuntimeError::Conflict(format!("name '{name}' already registered by agent {owner}")))
            }
            _ => {}
        }
        self.names.release(id);
        self.names.by_name.insert(name.clone(), id);
        self.names.by_agent.insert(id, name.clone());
        self.record(id, "ipc", "REGISTER", true, serde_json::json!({ "name": name }));
        Ok(RegisterReply { agent_id: id.0, name })
    }

    pub(super) fn send_message(&mut self, from: AgentId, req: SendRequest) -> Result<SendReply> {
        check_json(&req.message_json)?;
        let to = match &req.to {
            Target::Id(raw) => AgentId(*raw),
            Target::Name(name) => {
                *self.names.by_name.get(name).ok_or_else(|| RuntimeError::NotFound(format!("named '{name}'")))?
            }
        };
        self.deliver(from, to, req.message_json)?;
        self.record(from, "ipc", "SEND", true, serde_json::json!({ "to": to.0 }));
        Ok(SendReply { delivered_to: to.0 })
    }

    pub(super) fn broadcast(&mut self, from: AgentId, req: BroadcastRequest) -> Result<BroadcastReply> {
        check_json(&req.message_json)?;
        let targets: Vec<AgentId> =
            self.names.by_agent.keys().copied().filter(|&to| req.include_self || to != from).collect();
        let mut reply = BroadcastReply { delivered_count: 0, full: Vec::new() };
        for to in targets {
            match self.deliver(from, to, req.message_json.clone()) {
                Ok(()) => reply.delivered_count += 1,
                Err(_) => reply.full.push(to.0),
            }
        }
        self.record(from, "ipc", "BROADCAST", true, serde_json::json!({ "delivered": reply.delivered_count }));
        Ok(reply)
    }

    /// Queues a message for `to`, answering its waiting RECV if it has one.
    fn deliver(&mut self, from: AgentId, to: AgentId, message_json: String) -> Result<()> {
        let from_name = self.names.of(from).map(str::to_string);
        let agent = self.agents.get_mut(to).ok_or_else(|| RuntimeError::NotFound(to.to_string()))?;
        if agent.conn.is_none() {
            return Err(RuntimeError::Conflict(format!("agent {to} is not connected: it has no mailbox")));
        }
        let mailbox = &mut agent.mailbox;
        if mailbox.queue.len() >= MAILBOX_MESSAGES || mailbox.bytes + message_json.len() > MAILBOX_BYTES {
            let why = format!(
                "the mailbox of agent {to} is full ({MAILBOX_MESSAGES} messages or {} MiB): it must RECV first",
                MAILBOX_BYTES >> 20
            );
            let data = serde_json::json!({ "resource": "mailbox", "agent_id": to.0, "from": from.0 });
            self.emit(to, EventType::ResourceWarning, data, Audience::ObserversOf(to));
            return Err(RuntimeError::LimitExceeded(why));
        }
        mailbox.bytes += message_json.len();
        mailbox.queue.push_back(Queued { from, from_name: from_name.clone(), message_json, at: Instant::now() });
        if let Some(waiting) = mailbox.waiting.take() {
            let reply = mailbox.take(waiting.max);
            self.timers.retain(|(_, t)| *t != Timer::RecvWait(to));
            self.answer_recv(to, waiting.request_id, &reply);
        }
        let data = serde_json::json!({ "from": from.0, "from_name": from_name });
        self.emit(from, EventType::MessageReceived, data, Audience::Only(to));
        Ok(())
    }

    /// RECV: the messages now, or `None` when the reply waits for the first one.
    pub(super) fn recv_messages(
        &mut self,
        id: AgentId,
        request_id: u32,
        req: RecvRequest,
    ) -> Result<Option<RecvReply>> {
        let max = if req.max == 0 { DEFAULT_RECV } else { req.max as usize };
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let mailbox = &mut agent.mailbox;
        let wait = req.wait_ms.filter(|&ms| ms > 0 && mailbox.queue.is_empty());
        let Some(wait_ms) = wait else {
            return Ok(Some(mailbox.take(max)));
        };
        if mailbox.waiting.is_some() {
            return Err(RuntimeError::Conflict("a RECV is already waiting on this mailbox".into()));
        }
        mailbox.waiting = Some(WaitingRecv { request_id, max });
        let at = Instant::now() + Duration::from_millis(u64::from(wait_ms));
        self.timers.insert((at, Timer::RecvWait(id)));
        Ok(None)
    }

    /// A waiting RECV's time is up: it gets whatever there is, which is nothing.
    pub(super) fn recv_wait_over(&mut self, id: AgentId) {
        let Some(agent) = self.agents.get_mut(id) else { return };
        if let Some(waiting) = agent.mailbox.waiting.take() {
            let reply = agent.mailbox.take(waiting.max);
            self.answer_recv(id, waiting.request_id, &reply);
        }
    }

    fn answer_recv(&mut self, id: AgentId, request_id: u32, reply: &RecvReply) {
        let mut out = Vec::new();
        write_reply(&mut out, Opcode::RECV as u8, request_id, reply);
        self.send_bytes(id, &out);
    }

    /// The connection of `id` is gone: its name is free again and its mailbox is dropped.
    pub(super) fn forget_ipc(&mut self, id: AgentId) {
        self.names.release(id);
        self.timers.retain(|(_, t)| *t != Timer::RecvWait(id));
        if let Some(agent) = self.agents.get_mut(id) {
            agent.mailbox = Mailbox::default();
        }
    }
}
