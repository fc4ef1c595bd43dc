//! STORE, FETCH, DELETE and KEYS as the reactor serves them: the policy gate, the caller's
//! session, the clock, the audit log (category `state`) and the expiry timer, around
//! `crate::state`.

use std::time::{Duration, Instant};

use super::Committed;
use crate::policy::Access;
use crate::protocol::*;
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
        let change = match stored {
            Ok(change) => change,
            Err(e) => {
                details["error"] = e.to_string().into();
                self.record(id, "state", "STORE", false, details);
                return Err(e.into());
            }
        };
        self.state.persist(std::slice::from_ref(&change), true)?;
        self.record(id, "state", "STORE", true, details);
        let expires_at_ms = self.state.table.get(change.namespace, &change.key).and_then(|e| e.expires_at_ms);
        self.state_changed(&change);
        Ok(StoreReply { key: change.key, scope: req.scope, expires_at_ms })
    }

    fn delete_key(&mut self, id: AgentId, caller: Caller, req: KeyRequest, now: u64) -> Result<DeleteReply> {
        if self.state.table.fetch(caller, &req.key, req.scope, now).is_some_and(|(s, _)| s == Scope::Global) {
            self.state.check_writable()?;
        }
        let Some(change) = self.state.table.delete(caller, &req.key, req.scope, now) else {
            return Ok(DeleteReply { deleted: None });
        };
        self.state.persist(std::slice::from_ref(&change), true)?;
        let scope = change.namespace.scope();
        self.record(id, "state", "DELETE", true, serde_json::json!({ "key": req.key, "scope": scope.name() }));
        self.state_changed(&change);
        Ok(DeleteReply { deleted: Some(scope) })
    }

    /// Removes the entries whose time has come, on disk too.
    fn expire_state(&mut self, now: u64) {
        let expired = self.state.table.expire(now);
        // Expired keys were invisible already: no reply waits for their removal to be committed.
        // A failure to hand them over leaves them on disk, where the next start expires them.
        let _ = self.state.persist(&expired, false);
        for change in &expired {
            self.state_changed(change);
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

    /// The writer thread committed (or failed): releases the replies that waited for it.
    pub(in crate::runtime) fn state_committed(&mut self, report: Committed) {
        let (frames, failure) = self.state.committed(report);
        for (agent, frame) in frames {
            self.send_bytes(agent, &frame);
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
        if !self.agents.iter().any(|(other, agent)| agent.session.unwrap_or(other) == session) {
            self.state.table.drop_namespace(Namespace::Session(session.0));
        }
    }

    /// TODO(event bus): publish STATE_CHANGED `{key, scope, action}` to the agents that can read
    /// the key (global: every subscriber; session: its agents; agent: its owner).
    fn state_changed(&mut self, _change: &Change) {}
}
