//! The event bus agents see: SUBSCRIBE, UNSUBSCRIBE, POLL_EVENTS and EMIT, with the seed's event
//! types. Each agent has a bounded queue; when it is full the oldest event goes and is counted.
//!
//! Who sees what: lifecycle, SYSCALL_BLOCKED and RESOURCE_WARNING events about an agent reach the
//! agent, its ancestors and unrestricted agents; MESSAGE_RECEIVED reaches only the recipient;
//! STATE_CHANGED reaches whoever can read the key; CUSTOM events reach every subscriber. The host
//! subscribes too ([`super::Runtime::subscribe`]) and gets every event of the types it chose.

use std::collections::{BTreeSet, VecDeque};

use super::events::{Event, EventKind};
use super::reactor::{now_ms, Reactor};
use super::{AgentId, Result, RuntimeError};
use crate::protocol::*;

/// Events one agent's queue holds; beyond it the oldest are dropped.
pub(super) const EVENT_QUEUE: usize = 1024;
const MAX_SUBSCRIPTIONS: usize = 64;
/// Events one POLL_EVENTS takes when it does not say.
const DEFAULT_POLL: usize = 100;

macro_rules! event_types {
    ($($variant:ident = $name:literal,)*) => {
        /// The seed's event types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum EventType { $($variant,)* }

        impl EventType {
            const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }
        }
    };
}

event_types! {
    AgentSpawned = "AGENT_SPAWNED",
    AgentExited = "AGENT_EXITED",
    AgentPaused = "AGENT_PAUSED",
    AgentResumed = "AGENT_RESUMED",
    AgentRestarting = "AGENT_RESTARTING",
    AgentEscalated = "AGENT_ESCALATED",
    MessageReceived = "MESSAGE_RECEIVED",
    StateChanged = "STATE_CHANGED",
    SyscallBlocked = "SYSCALL_BLOCKED",
    ResourceWarning = "RESOURCE_WARNING",
    Custom = "CUSTOM",
}

fn bus_event(source: AgentId, kind: EventType, data: serde_json::Value) -> BusEvent {
    BusEvent {
        event_type: kind.name().into(),
        custom_type: None,
        data_json: data.to_string(),
        source_agent_id: source.0,
        timestamp_ms: now_ms(),
    }
}

/// Who may receive an event.
#[derive(Debug, Clone, Copy)]
pub(super) enum Audience {
    Everyone,
    Only(AgentId),
    /// The agent, its ancestors and unrestricted agents.
    ObserversOf(AgentId),
    /// The agents that may read the keys of this state namespace.
    StateReaders(crate::state::Namespace),
}

/// The event types an agent or the host subscribed to.
#[derive(Default)]
pub(super) struct Interest {
    types: BTreeSet<String>,
}

impl Interest {
    fn wants(&self, event: &BusEvent) -> bool {
        self.types.contains("*")
            || self.types.contains(&event.event_type)
            || event.custom_type.as_ref().is_some_and(|name| self.types.contains(name))
    }

    /// Adds (`on`) or removes these types; removing with `all` removes every one first.
    pub fn update(&mut self, names: Vec<String>, on: bool, all: bool) -> Result<Vec<String>> {
        if !on && all {
            self.types.clear();
        }
        for name in names {
            if name.is_empty() || name.len() > 128 {
                return Err(RuntimeError::InvalidArgument("an event type is 1 to 128 bytes".into()));
            }
            if !on {
                self.types.remove(&name);
            } else if self.types.len() < MAX_SUBSCRIPTIONS {
                self.types.insert(name);
            } else {
                return Err(RuntimeError::LimitExceeded(format!("at most {MAX_SUBSCRIPTIONS} subscriptions")));
            }
        }
        Ok(self.types.iter().cloned().collect())
    }
}

#[derive(Default)]
pub(super) struct Subscription {
    interest: Interest,
    queue: VecDeque<BusEvent>,
    dropped: u64,
}

impl Subscription {
    fn push(&mut self, event: BusEvent) {
        if self.queue.len() >= EVENT_QUEUE {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(event);
    }
}

impl Reactor {
    /// Queues an event for every subscriber in `audience` that wants it, and for the host if it
    /// subscribed; returns how many agents queued it.
    pub(super) fn emit(
        &mut self,
        source: AgentId,
        kind: EventType,
        data: serde_json::Value,
        audience: Audience,
    ) -> u32 {
        self.emit_event(bus_event(source, kind, data), audience, true)
    }

    /// `to_host`: lifecycle events reach the host as their own kinds already.
    fn emit_event(&mut self, event: BusEvent, audience: Audience, to_host: bool) -> u32 {
        if to_host && self.host_interest.wants(&event) {
            let source = AgentId(event.source_agent_id);
            let agent_name = self.agents.get(source).map(|a| a.name.clone()).unwrap_or_default();
            let timestamp_ms = event.timestamp_ms;
            let kind = EventKind::Bus(event.clone());
            self.events.publish(Event { agent_id: source, agent_name, kind, timestamp_ms });
        }
        let mut delivered = 0;
        for id in self.agents.ids() {
            let reaches = match audience {
                Audience::Everyone => true,
                Audience::Only(only) => id == only,
                Audience::ObserversOf(about) => self.sees(id, about),
                Audience::StateReaders(namespace) => self.reads_state(id, namespace),
            };
            let Some(agent) = self.agents.get_mut(id) else { continue };
            if reaches && agent.conn.is_some() && agent.subscription.interest.wants(&event) {
                agent.subscription.push(event.clone());
                delivered += 1;
            }
        }
        delivered
    }

    /// Lifecycle events as agents see them, next to the host's.
    pub(super) fn emit_lifecycle(&mut self, id: AgentId, kind: &EventKind) {
        let (name, parent) = match self.agents.get(id) {
            Some(agent) => (agent.name.clone(), agent.parent.map(|p| p.0)),
            None => return,
        };
        let (event_type, data) = match kind {
            EventKind::Spawned { pid } => (
                EventType::AgentSpawned,
                serde_json::json!({ "agent_id": id.0, "name": name, "pid": pid, "parent_id": parent }),
            ),
            EventKind::Exited(exit) => (
                EventType::AgentExited,
                serde_json::json!({ "agent_id": id.0, "name": name, "exit_code": exit.code,
                    "signal": exit.signal, "oom_killed": exit.oom_killed }),
            ),
            EventKind::Paused => (EventType::AgentPaused, serde_json::json!({ "agent_id": id.0, "name": name })),
            EventKind::Resumed => (EventType::AgentResumed, serde_json::json!({ "agent_id": id.0, "name": name })),
            EventKind::Restarting { attempt, delay_ms } => (
                EventType::AgentRestarting,
                serde_json::json!({ "agent_id": id.0, "agent_name": name, "restart_count": attempt,
                    "delay_ms": delay_ms }),
            ),
            EventKind::Escalated => {
                (EventType::AgentEscalated, serde_json::json!({ "agent_id": id.0, "agent_name": name }))
            }
            EventKind::Oom => (
                EventType::ResourceWarning,
                serde_json::json!({ "agent_id": id.0, "name": name, "resource": "memory", "action": "oom_kill" }),
            ),
            // Already a bus event: it went out when it was emitted.
            EventKind::Bus(_) => return,
        };
        self.emit_event(bus_event(id, event_type, data), Audience::ObserversOf(id), false);
    }

    pub(super) fn subscribe(&mut self, id: AgentId, req: SubscribeRequest, on: bool) -> Result<SubscribeReply> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let subscribed = agent.subscription.interest.update(req.event_types, on, req.all)?;
        if subscribed.is_empty() {
            // Nothing wanted: nothing kept.
            agent.subscription.queue.clear();
        }
        Ok(SubscribeReply { subscribed })
    }

    pub(super) fn poll_events(&mut self, id: AgentId, req: PollEventsRequest) -> Result<PollEventsReply> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let max = if req.max == 0 { DEFAULT_POLL } else { req.max as usize };
        let sub = &mut agent.subscription;
        let take = max.min(sub.queue.len());
        Ok(PollEventsReply { events: sub.queue.drain(..take).collect(), dropped: std::mem::take(&mut sub.dropped) })
    }

    /// EMIT: a CUSTOM event, to every subscriber. The runtime's own types cannot be forged.
    pub(super) fn emit_custom(&mut self, id: AgentId, req: EmitRequest) -> Result<EmitReply> {
        let custom_type = match EventType::ALL.iter().find(|t| t.name() == req.event_type) {
            Some(EventType::Custom) => None,
            Some(_) => return Err(crate::policy::Denial::ReservedEvent(req.event_type).into()),
            None if req.event_type.is_empty() || req.event_type.len() > 128 || req.event_type == "*" => {
                return Err(RuntimeError::InvalidArgument("a custom event type is 1 to 128 bytes, not '*'".into()))
            }
            None => Some(req.event_type),
        };
        serde_json::from_str::<serde::de::IgnoredAny>(&req.data_json)
            .map_err(|e| RuntimeError::InvalidArgument(format!("event data is not JSON: {e}")))?;
        let event = BusEvent {
            event_type: EventType::Custom.name().into(),
            custom_type: custom_type.clone(),
            data_json: req.data_json,
            source_agent_id: id.0,
            timestamp_ms: now_ms(),
        };
        let delivered = self.emit_event(event, Audience::Everyone, true);
        self.record(id, "ipc", "EMIT", true, serde_json::json!({ "custom_type": custom_type }));
        Ok(EmitReply { delivered })
    }
}
