//! The state store's std side: `crate::state`'s [`Table`] served on the reactor thread, in memory,
//! and with a path configured also in a database file. Only global keys go to disk: agent and
//! session keys belong to agents of this run, which end with it (and whose ids the next run hands
//! out again).
//!
//! A durable write is answered once the disk has it. Until then every later state reply and
//! STATE_CHANGED event waits behind it, so that no agent is shown a value a crash could still take
//! back; if the commit fails, the write is undone.

mod durable;
mod serve;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;

pub use durable::Committed;
use durable::{Batch, Durable, Write};

use super::{AgentId, Command, RuntimeConfig};
use crate::protocol::{ErrorCode, ErrorReply, Opcode};
use crate::state::{Action, Change, Entry, Namespace, Table};

/// Why the database cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the state database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("reading the state database {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the state database {path} holds key '{key}' in a form that does not decode: {reason}")]
    Corrupt { path: PathBuf, key: String, reason: String },
    #[error(
        "the state database {path} failed to commit ({reason}): global keys are read-only until the runtime restarts"
    )]
    Failed { path: PathBuf, reason: String },
}

/// What may have to wait for a commit before it goes out.
pub(in crate::runtime) enum Waiting {
    /// A state reply: its payload, or the error it became when the commit failed.
    Reply { agent: AgentId, opcode: Opcode, request_id: u32, reply: Result<Vec<u8>, ErrorReply> },
    /// The STATE_CHANGED event of a change that agent `by` made (0: the clock).
    Event { by: AgentId, change: Change },
}

/// Something waiting for batch `after` to be committed.
struct Held {
    after: u64,
    waiting: Waiting,
}

pub(in crate::runtime) struct StateStore {
    pub table: Table,
    durable: Option<Durable>,
    held: VecDeque<Held>,
    /// What each global key sent to the disk held before, by batch, until that batch is committed.
    undo: Vec<(u64, String, Option<Entry>)>,
    /// The last batch handed to the writer thread, and the last it committed.
    sent: u64,
    committed: u64,
    /// The last batch that changed what agents can see: replies and events after it wait for it.
    shown: u64,
    /// Why a commit failed, once one has; global keys are read-only from then on.
    failed: Option<String>,
    /// The expiry the reactor's state timer is set for.
    pub armed: Option<u64>,
}

impl StateStore {
    /// An empty store in memory, or the one at `config.state_path` with its global keys read back.
    /// Commits are reported to the reactor through its inbox and waker.
    /// The audit entries of earlier runs the database kept are put in `audit`.
    pub fn open(
        config: &RuntimeConfig,
        outbox: Sender<Command>,
        waker: Arc<mio::Waker>,
        audit: &mut crate::audit::AuditLog,
    ) -> Result<StateStore, StoreError> {
        let mut table = Table::new(config.state_limits.clone());
        let durable = match &config.state_path {
            Some(path) => {
                let report = move |committed| {
                    // A reactor that stopped has nobody left to answer.
                    if outbox.send(Command::StateCommitted(committed)).is_ok() {
                        let _ = waker.wake();
                    }
                };
                let mut earlier = Vec::new();
                let durable = Durable::open(path, &mut table, &mut earlier, report)?;
                audit.restore(earlier);
                Some(durable)
            }
            None => None,
        };
        Ok(StateStore {
            table,
            durable,
            held: VecDeque::new(),
            undo: Vec::new(),
            sent: 0,
            committed: 0,
            shown: 0,
            failed: None,
            armed: None,
        })
    }

    /// Refuses a write to global keys once the database has failed.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match (&self.failed, &self.durable) {
            (Some(reason), Some(durable)) => {
                Err(StoreError::Failed { path: durable.path().to_path_buf(), reason: reason.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Sends what `changes` did to global keys to the disk. `shown`: agents can see the changes, so
    /// later replies and events wait for their commit, and a failed commit undoes them (expired keys
    /// were invisible already: their removal needs neither).
    pub fn persist(&mut self, changes: &mut [Change], shown: bool) -> Result<(), StoreError> {
        let Some(durable) = self.durable.as_ref().filter(|_| self.failed.is_none()) else { return Ok(()) };
        let writes: Vec<Write> = changes
            .iter()
            .filter(|c| c.namespace == Namespace::Global)
            .map(|c| match (c.action, self.table.get(Namespace::Global, &c.key)) {
                (Action::Stored, Some(entry)) => Write::Put {
                    key: c.key.clone(),
                    value_json: entry.value_json.clone(),
                    expires_at_ms: entry.expires_at_ms,
                },
                _ => Write::Remove(c.key.clone()),
            })
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.sent += 1;
        durable.send(Batch { seq: self.sent, writes })?;
        if shown {
            self.shown = self.sent;
            for change in changes.iter_mut().filter(|c| c.namespace == Namespace::Global) {
                self.undo.push((self.sent, change.key.clone(), change.replaced.take()));
            }
        }
        Ok(())
    }

    /// Keeps an audit entry in the database too (the newest `capacity` of them), committed with the
    /// next group of writes; nothing waits for it.
    pub fn persist_audit(&mut self, entry: &crate::audit::AuditEntry, capacity: usize) {
        let Some(durable) = self.durable.as_ref().filter(|_| self.failed.is_none()) else { return };
        let Ok(entry_json) = serde_json::to_string(entry) else { return };
        let keep_from = entry.id.saturating_sub(capacity as u64 - 1);
        self.sent += 1;
        // A writer that stopped has reported its failure, which is audited on its own.
        let _ =
            durable.send(Batch { seq: self.sent, writes: vec![Write::Audit { id: entry.id, entry_json, keep_from }] });
    }

    /// A state reply's payload, to send now, or `None` when it is held until what it has seen is
    /// committed.
    pub fn answer(&mut self, agent: AgentId, opcode: Opcode, request_id: u32, payload: Vec<u8>) -> Option<Vec<u8>> {
        if self.shown <= self.committed {
            return Some(payload);
        }
        self.hold(Waiting::Reply { agent, opcode, request_id, reply: Ok(payload) });
        None
    }

    /// A change to announce now, or `None` when its event is held behind a commit, in order with
    /// the replies.
    pub fn announce(&mut self, by: AgentId, change: Change) -> Option<(AgentId, Change)> {
        if self.shown <= self.committed {
            return Some((by, change));
        }
        self.hold(Waiting::Event { by, change });
        None
    }

    fn hold(&mut self, waiting: Waiting) {
        self.held.push_back(Held { after: self.shown, waiting });
    }

    /// The writer's report: what it releases, in order, and the failure, the first time there is
    /// one. After a failure every uncommitted change is undone in the table, newest first, the
    /// replies that waited carry the error, and their events are dropped: those changes did not
    /// happen.
    pub fn committed(&mut self, report: Committed) -> (Vec<Waiting>, Option<StoreError>) {
        if let (Some(reason), None, Some(durable)) = (report.error, &self.failed, &self.durable) {
            let failure = StoreError::Failed { path: durable.path().to_path_buf(), reason: reason.clone() };
            let error = ErrorReply { code: ErrorCode::Io as u16, message: failure.to_string() };
            let replies = self.held.drain(..).filter_map(|held| match held.waiting {
                Waiting::Reply { agent, opcode, request_id, .. } => {
                    Some(Waiting::Reply { agent, opcode, request_id, reply: Err(error.clone()) })
                }
                Waiting::Event { .. } => None,
            });
            let released = replies.collect();
            while let Some((_, key, before)) = self.undo.pop() {
                self.table.restore(Namespace::Global, key, before);
            }
            (self.committed, self.shown) = (self.sent, self.sent);
            self.failed = Some(reason);
            return (released, Some(failure));
        }
        self.committed = self.committed.max(report.through);
        let done = self.undo.partition_point(|(batch, _, _)| *batch <= self.committed);
        self.undo.drain(..done);
        let mut released = Vec::new();
        while self.held.front().is_some_and(|h| h.after <= self.committed) {
            let Some(held) = self.held.pop_front() else { break };
            released.push(held.waiting);
        }
        (released, None)
    }

    /// Lets the writer thread finish what it was sent, and stops it.
    pub fn close(&mut self) {
        if let Some(durable) = self.durable.as_mut() {
            durable.close();
        }
    }
}
