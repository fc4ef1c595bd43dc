//! STORE, FETCH, DELETE and KEYS as the reactor serves them: the policy gate, the caller's
//! session, the clock, the audit log (category `state`) and the expiry timer, around
//! `crate::state`.

use std::time::{Duration, Instant};

use super::{Committed, Waiting};
use crate::policy::Access;
use crate::protocol::*;
use crate::runtime::bus::{Audience, EventType};
use crate::runtime::reactor::{now_ms, Reactor, Timer};
use crate::runtime::syscalls::request;
use crate::runtime::{AgentId, Result, RuntimeError};
use crate::state::{Caller, Change, KeyQuery, Namespace};

impl Reactor {
    /// Serves a state request: its reply payload now, or `None` when the reply waits for a commit.
    pub(in crate::runtime) fn serve_state(
        &mut self,
        id: AgentId,
        op: Opcode,
        request_id: u32,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let access = if matches!(op, Opcode::STORE | Opcode::DELETE) { Access::Write } else { Access::Read };
        agent.policy.check_state(access)?;
        let caller = Caller { agent: id.0, session: self.agents.session_of(id).0 };
        let now = now_ms();
        self.expire_state(now);
        let reply = match op {
            Opcode::STORE => encode(&self.store_value(id, caller, request(payload, op)?, now)?),
            Opcode::FETCH => {
                let req: KeyRequest = request(payload, op)?;
                let value = self.state.table.fetch(caller, &req.key, req.scope, now).map(|(scope, entry)| {
                    StoredValue { scope, value_json: entry.value_json.clone(), expires_at_ms: entry.expires_at_ms }
                });
                encode(&FetchReply { value })
            }
            Opcode::DELETE => encode(&self.delete_key(id, caller, request(payload, op)?, now)?),
            _ => {
                let req: KeysRequest = request(payload, op)?;
                let query = KeyQuery {
                    prefix: &req.prefix,
                    scope: req.scope,
                    after: req.after.as_deref(),
                    limit: req.limit as usize,
                };
                let page = self.state.table.keys(caller, &query, now);
                let keys = page.keys.into_iter().map(|(key, scope)| KeyEntry { key, scope }).collect();
                encode(&KeysReply { keys, more: page.more })
            }
        };
        self.arm_state_timer();
        Ok(self.state.answer(id, op, request_id, reply))
    }

    fn store_value(&mut self, id: AgentId, caller: Caller, req: StoreRequest, now: u64) -> Result<StoreReply> {
        if req.scope == Scope::Global {
            self.state.check_writable()?;
        }
        let mut details = serde_json::json!({ "key": req.key, "scope": req.scope.name(), "ttl_ms": req.ttl_ms });
        let stored = self.state.table.store(caller, req.scope, &req.key, req.value_json, req.ttl_ms, now);
        let mut change = match stored {
            Ok(change) => change,
            Err(e) => {
                details["error"] = e.to_string().into();
                self.record(id, "state", "STORE", false, details);
                return Err(e.into());
            }
        };
        self.state.persist(std::slice::from_mut(&mut change), true)?;
        self.record(id, "state", "STORE", true, details);
        let expires_at_ms = self.state.table.get(change.namespace, &change.key).and_then(|e| e.expires_at_ms);
        let key = change.key.clone();
        self.state_changed(id, change);
        Ok(StoreReply { key, scope: req.scope, expires_at_ms })
    }

    fn delete_key(&mut self, id: AgentId, caller: Caller, req: KeyRequest, now: u64) -> Result<DeleteReply> {
        if self.state.table.fetch(caller, &req.key, req.scope, now).is_some_and(|(s, _)| s == Scope::Global) {
            self.state.check_writable()?;
        }
        let Some(mut change) = self.state.table.delete(caller, &req.key, req.scope, now) else {
            return Ok(DeleteReply { deleted: None });
        };
        self.state.persist(std::slice::from_mut(&mut change), true)?;
        let scope = change.namespace.scope();
        self.record(id, "state", "DELETE", true, serde_json::json!({ "key": req.key, "scope": scope.name() }));
        self.state_changed(id, change);
        Ok(DeleteReply { deleted: Some(scope) })
    }

    /// Removes the entries whose time has come, on disk too.
    fn expire_state(&mut self, now: u64) {
        let mut expired = self.state.table.expire(now);
        // Expired keys were invisible already: no reply waits for their removal to be committed.
        // A failure to hand them over leaves them on disk, where the next start expires them.
        let _ = self.state.persist(&mut expired, false);
        for change in expired {
            self.state_changed(AgentId(0), change);
        }
    }

    /// Sets the reactor's state timer for the next expiry, if that changed.
    fn arm_state_timer(&mut self) {
        let next = self.state.table.next_expiry();
        if next == self.state.armed {
            return;
        }
        self.timers.retain(|(_, timer)| *timer != Timer::StateExpiry);
        if let Some(at) = next {
            let delay = Duration::from_millis(at.saturating_sub(now_ms()));
            self.timers.insert((Instant::now() + delay, Timer::StateExpiry));
        }
        self.state.armed = next;
    }

    pub(in crate::runtime) fn state_timer_fired(&mut self) {
        self.state.armed = None;
        self.expire_state(now_ms());
        self.arm_state_timer();
    }

    /// The writer thread committed (or failed): releases the replies and events that waited for it.
    pub(in crate::runtime) fn state_committed(&mut self, report: Committed) {
        let (released, failure) = self.state.committed(report);
        for waiting in released {
            match waiting {
                Waiting::Reply { agent, opcode, request_id, reply } => {
                    let mut out = Vec::new();
                    match reply {
                        Ok(payload) => {
                            frame::write_frame(&mut out, opcode as u8, frame::flags::REPLY, request_id, &payload)
                        }
                        Err(error) => write_error(&mut out, opcode as u8, request_id, &error),
                    }
                    self.send_bytes(agent, &out);
                }
                Waiting::Event { by, change } => self.emit_state_changed(by, &change),
            }
        }
        if let Some(failure) = failure {
            let details = serde_json::json!({ "error": failure.to_string() });
            self.record(AgentId(0), "state", "DATABASE_FAILED", false, details);
        }
    }

    /// Forgets an agent's record. Its agent keys go with it, and its session's keys once no agent
    /// of that session is left.
    pub(in crate::runtime) fn forget_agent(&mut self, id: AgentId) {
        let session = self.agents.session_of(id);
        if self.agents.remove(id).is_none() {
            return;
        }
        self.state.table.drop_namespace(Namespace::Agent(id.0));
        if !self.agents.iter().any(|(other, _)| self.agents.session_of(other) == session) {
            self.state.table.drop_namespace(Namespace::Session(session.0));
        }
    }

    /// Announces a change made by agent `by` (0: the clock), now or once it is committed.
    fn state_changed(&mut self, by: AgentId, change: Change) {
        if let Some((by, change)) = self.state.announce(by, change) {
            self.emit_state_changed(by, &change);
        }
    }

    /// STATE_CHANGED `{key, scope, action}`, to the subscribers that may read the key: any agent
    /// with the read right for a global key, the session's agents, the owner.
    fn emit_state_changed(&mut self, by: AgentId, change: &Change) {
        let data = serde_json::json!({
            "key": change.key,
            "scope": change.namespace.scope().name(),
            "action": change.action.name(),
        });
        self.emit(by, EventType::StateChanged, data, Audience::StateReaders(change.namespace));
    }

    /// Whether agent `id` may read the keys of `namespace`: it reaches the namespace, and its policy
    /// lets it read state.
    pub(in crate::runtime) fn reads_state(&self, id: AgentId, namespace: Namespace) -> bool {
        let reaches = match namespace {
            Namespace::Global => true,
            Namespace::Agent(owner) => owner == id.0,
            Namespace::Session(root) => self.agents.session_of(id).0 == root,
        };
        reaches && self.agents.get(id).is_some_and(|a| a.policy.check_state(Access::Read).is_ok())
    }
}
