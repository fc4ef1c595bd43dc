//! STORE, FETCH, DELETE and KEYS: the state store's requests and replies. Values travel as JSON
//! text; the rules (scopes, expiry, caps) are `crate::state`'s.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

pub use crate::state::Scope;

/// STORE: `value_json` under `key` in `scope`, expiring after `ttl_ms` (never when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRequest {
    pub key: String,
    pub value_json: String,
    pub scope: Scope,
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReply {
    pub key: String,
    pub scope: Scope,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// FETCH and DELETE: `key` in `scope`, or the most private key of that name (agent, session,
/// global) when `scope` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    pub key: String,
    pub scope: Option<Scope>,
}

/// A value as FETCH finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    pub scope: Scope,
    pub value_json: String,
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReply {
    /// `None` when the caller sees no live key of that name.
    pub value: Option<StoredValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReply {
    /// The scope of the key deleted; `None` when there was none to delete.
    pub deleted: Option<Scope>,
}

/// KEYS: the caller's visible keys starting with `prefix`, one page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeysRequest {
    pub prefix: String,
    pub scope: Option<Scope>,
    /// Resume after this key: the last key of the previous page.
    pub after: Option<String>,
    /// At most this many (0: the cap, 1 000).
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: String,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysReply {
    /// Sorted by key, then scope; one key's scopes are never split across pages.
    pub keys: Vec<KeyEntry>,
    /// More keys follow: ask again with `after` set to the last key.
    pub more: bool,
}
