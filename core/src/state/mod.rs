//! The state store's rules, sans-IO: keys in three scopes, JSON values, expiry on an injected clock,
//! per-agent quotas and prefix listing. [`Table`] holds every entry; the runtime checks the caller's
//! policy, passes the time, and persists and announces the [`Change`]s it returns.
//!
//! Call order: [`Table::expire`] with `now`, then one of [`Table::store`], [`Table::fetch`],
//! [`Table::delete`] or [`Table::keys`] with the same `now`; [`Table::next_expiry`] says when to call
//! `expire` again. Times are milliseconds since the Unix epoch, so an expiry means the same after a
//! restart.
//!
//! Scopes, and who sees (and so may write and delete) a key:
//! - `global`: one namespace for every agent.
//! - `agent`: one namespace per agent, seen only by that agent.
//! - `session`: one namespace per spawn tree, named by its root (the topmost agent): an agent and
//!   every agent it spawned, directly or not, share it.
//!
//! A request that names no scope finds the most private key of that name: agent, then session, then
//! global.

mod table;
#[cfg(test)]
mod tests;

use alloc::string::String;

use serde::{Deserialize, Serialize};

pub use table::{KeyQuery, KeysPage, Table, MAX_PAGE};

/// Where a key lives, as an agent names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Global,
    Agent,
    Session,
}

impl Scope {
    /// The order in which a request without a scope looks: the most private first.
    pub const LOOKUP_ORDER: [Scope; 3] = [Scope::Agent, Scope::Session, Scope::Global];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Agent => "agent",
            Scope::Session => "session",
        }
    }
}

/// One namespace of keys: the global one, an agent's own, or a session's (by its root's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    Global,
    Agent(u64),
    Session(u64),
}

impl Namespace {
    pub fn scope(self) -> Scope {
        match self {
            Namespace::Global => Scope::Global,
            Namespace::Agent(_) => Scope::Agent,
            Namespace::Session(_) => Scope::Session,
        }
    }
}

/// Who asks: an agent, and the root of its spawn tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub agent: u64,
    pub session: u64,
}

impl Caller {
    /// The namespace this caller reaches under `scope`.
    pub fn namespace(self, scope: Scope) -> Namespace {
        match scope {
            Scope::Global => Namespace::Global,
            Scope::Agent => Namespace::Agent(self.agent),
            Scope::Session => Namespace::Session(self.session),
        }
    }
}

/// Caps on what the store holds. An entry's size is its key's bytes plus its value's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLimits {
    /// Longest key, in bytes (default 256).
    pub max_key_bytes: usize,
    /// Largest value, as JSON text (default 256 KiB).
    pub max_value_bytes: usize,
    /// Keys an agent may hold, in every scope together (default 1 000). A key counts against the
    /// agent that wrote it last.
    pub max_keys_per_agent: usize,
    /// Bytes an agent may hold, likewise (default 16 MiB).
    pub max_bytes_per_agent: usize,
    /// Bytes the whole store may hold, whoever wrote them (default 256 MiB).
    pub max_total_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_key_bytes: 256,
            max_value_bytes: 256 << 10,
            max_keys_per_agent: 1_000,
            max_bytes_per_agent: 16 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value_json: String,
    /// When it stops being visible; `None` never.
    pub expires_at_ms: Option<u64>,
    /// The agent that wrote it last, whose quota it counts against. [`EARLIER_RUN`] for an entry
    /// loaded from disk: agent ids are not reused within a run, but a new run hands them out again.
    pub writer: u64,
}

/// The writer of entries loaded from disk: an id no agent has (agent ids are never 0).
pub const EARLIER_RUN: u64 = 0;

impl Entry {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    fn size(&self, key: &str) -> usize {
        key.len() + self.value_json.len()
    }
}

/// What a request or the clock changed: for the runtime to persist (global keys, when durable) and
/// to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub namespace: Namespace,
    pub key: String,
    pub action: Action,
    /// What the key held before, to put back ([`Table::restore`]) if the disk does not take the
    /// change.
    pub replaced: Option<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stored,
    Deleted,
    Expired,
}

impl Action {
    /// The name STATE_CHANGED events carry.
    pub fn name(self) -> &'static str {
        match self {
            Action::Stored => "store",
            Action::Deleted => "delete",
            Action::Expired => "expire",
        }
    }
}

/// Why a STORE was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {len} bytes, over the cap of {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("the value of '{key}' is {len} bytes of JSON, over the cap of {max}")]
    ValueTooLarge { key: String, len: usize, max: usize },
    #[error("the value of '{key}' is not JSON: {reason}")]
    NotJson { key: String, reason: String },
    #[error("a ttl must be at least 1 ms")]
    ZeroTtl,
    #[error("storing '{key}' would give agent {agent} {keys} keys, over its quota of {max}")]
    KeyQuota { key: String, agent: u64, keys: usize, max: usize },
    #[error("storing '{key}' would give agent {agent} {bytes} bytes, over its quota of {max}")]
    ByteQuota { key: String, agent: u64, bytes: usize, max: usize },
    #[error("storing '{key}' would fill the store to {bytes} bytes, over its cap of {max}")]
    StoreFull { key: String, bytes: usize, max: usize },
}

impl StateError {
    /// Whether the request was malformed, rather than over a cap or quota.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            StateError::EmptyKey | StateError::KeyTooLong { .. } | StateError::NotJson { .. } | StateError::ZeroTtl
        )
    }
}
