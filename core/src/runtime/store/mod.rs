//! The state store's std side: `crate::state`'s [`Table`] served on the reactor thread, in memory,
//! and with a path configured also in a database file. Only global keys go to disk: agent and
//! session keys belong to agents of this run, which end with it (and whose ids the next run hands
//! out again).
//!
//! A durable write is answered once the disk has it. Until then every later state reply waits
//! behind it, so that no agent is shown a value a crash could still take back.

mod durable;
mod serve;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;

pub use durable::Committed;
use durable::{Batch, Durable, Write};

use super::{AgentId, Command, RuntimeConfig};
use crate::protocol::{frame, write_error, ErrorCode, ErrorReply, Opcode};
use crate::state::{Action, Change, Namespace, Table};

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

/// A reply that waits for batch `after` to be committed.
struct Held {
    after: u64,
    agent: AgentId,
    opcode: Opcode,
    request_id: u32,
    payload: Vec<u8>,
}

pub(in crate::runtime) struct StateStore {
    pub table: Table,
    durable: Option<Durable>,
    held: VecDeque<Held>,
    /// The last batch handed to the writer thread, and the last it committed.
    sent: u64,
    committed: u64,
    /// The last batch that changed what agents can see: replies made after it wait for it.
    shown: u64,
    /// Why a commit failed, once one has; global keys are read-only from then on.
    failed: Option<String>,
    /// The expiry the reactor's state timer is set for.
    pub armed: Option<u64>,
}

impl StateStore {
    /// An empty store in memory, or the one at `config.state_path` with its global keys read back.
    /// Commits are reported to the reactor through its inbox and waker.
    pub fn open(
        config: &RuntimeConfig,
        outbox: Sender<Command>,
        waker: Arc<mio::Waker>,
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
                let durable = Durable::open(path, report)?;
                durable.load(&mut table)?;
                Some(durable)
            }
            None => None,
        };
        Ok(StateStore {
            table,
            durable,
            held: VecDeque::new(),
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
    /// later replies wait for their commit (expired keys were invisible already).
    pub fn persist(&mut self, changes: &[Change], shown: bool) -> Result<(), StoreError> {
        let Some(durable) = self.durable.as_ref().filter(|_| self.failed.is_none()) else { return Ok(()) };
        let writes: Vec<Write> = changes
            .iter()
            .filter(|c| c.namespace == Namespace::Global)
            .map(|c| match self.table.get(Namespace::Global, &c.key) {
                Some(entry) if c.action == Action::Stored => Write::Put {
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
        }
        Ok(())
    }

    /// A state reply's payload, to send now, or `None` when it is held until what it has seen is
    /// committed.
    pub fn answer(&mut self, agent: AgentId, opcode: Opcode, request_id: u32, payload: Vec<u8>) -> Option<Vec<u8>> {
        if self.shown <= self.committed {
            return Some(payload);
        }
        self.held.push_back(Held { after: self.shown, agent, opcode, request_id, payload });
        None
    }

    /// The writer's report: the held replies it releases, as frames for their agents, and the
    /// failure, the first time there is one. After a failure the table's global keys are read back
    /// from the disk, and what waited is answered with the error.
    pub fn committed(&mut self, report: Committed) -> (Vec<(AgentId, Vec<u8>)>, Option<StoreError>) {
        let mut frames = Vec::new();
        if let (Some(reason), None, Some(durable)) = (report.error, &self.failed, &self.durable) {
            let failure = StoreError::Failed { path: durable.path().to_path_buf(), reason: reason.clone() };
            let error = ErrorReply { code: ErrorCode::Io as u16, message: failure.to_string() };
            for held in self.held.drain(..) {
                let mut out = Vec::new();
                write_error(&mut out, held.opcode as u8, held.request_id, &error);
                frames.push((held.agent, out));
            }
            // Nothing sent will be committed now; if even reading fails, the table keeps its own.
            let _ = durable.load(&mut self.table);
            (self.committed, self.shown) = (self.sent, self.sent);
            self.failed = Some(reason);
            return (frames, Some(failure));
        }
        self.committed = self.committed.max(report.through);
        while self.held.front().is_some_and(|h| h.after <= self.committed) {
            let Some(held) = self.held.pop_front() else { break };
            let mut out = Vec::new();
            frame::write_frame(&mut out, held.opcode as u8, frame::flags::REPLY, held.request_id, &held.payload);
            frames.push((held.agent, out));
        }
        (frames, None)
    }

    /// Lets the writer thread finish what it was sent, and stops it.
    pub fn close(&mut self) {
        if let Some(durable) = self.durable.as_mut() {
            durable.close();
        }
    }
}
