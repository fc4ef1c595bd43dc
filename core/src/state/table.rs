//! [`Table`]: every entry by namespace and key, an index of expiry times, and each writer's usage.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Bound;

use super::{Action, Caller, Change, Entry, Namespace, Scope, StateError, StateLimits};

/// The most keys one KEYS page holds (and what a limit of 0 means).
pub const MAX_PAGE: usize = 1_000;

/// A KEYS request: keys starting with `prefix`, after `after`, in one scope or all.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyQuery<'a> {
    pub prefix: &'a str,
    pub scope: Option<Scope>,
    /// Only keys greater than this one: the last key of the previous page.
    pub after: Option<&'a str>,
    /// At most this many entries (0 or over [`MAX_PAGE`]: `MAX_PAGE`).
    pub limit: usize,
}

/// Visible keys, sorted by key then scope. A page never splits the scopes of one key, so it may
/// hold up to two entries past the limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeysPage {
    pub keys: Vec<(String, Scope)>,
    /// More keys follow: ask again with `after` set to the last key.
    pub more: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    keys: usize,
    bytes: usize,
}

/// The store's contents and its rules. See the [module](super) for the call order.
#[derive(Debug, Default)]
pub struct Table {
    spaces: BTreeMap<Namespace, BTreeMap<String, Entry>>,
    expiries: BTreeSet<(u64, Namespace, String)>,
    usage: BTreeMap<u64, Usage>,
    total_bytes: usize,
    limits: StateLimits,
}

impl Table {
    pub fn new(limits: StateLimits) -> Table {
        Table { limits, ..Table::default() }
    }

    /// Bytes held (keys and values), expired entries not yet removed included.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// An entry, live or not.
    pub fn get(&self, namespace: Namespace, key: &str) -> Option<&Entry> {
        self.spaces.get(&namespace)?.get(key)
    }

    /// Sets what a key holds, past the caps: an entry read back from disk (a store reopened with
    /// smaller caps keeps what it holds), or what a change replaced, to undo it.
    pub fn restore(&mut self, namespace: Namespace, key: String, entry: Option<Entry>) {
        match entry {
            Some(entry) => self.insert(namespace, key, entry),
            None => self.remove(namespace, &key),
        };
    }

    /// STORE: puts `value_json` under `key` in the caller's namespace of `scope`, expiring `ttl_ms`
    /// after `now_ms`. The value must be JSON; key, value and the writer's quota are checked.
    pub fn store(
        &mut self,
        caller: Caller,
        scope: Scope,
        key: &str,
        value_json: String,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Change, StateError> {
        let limits = &self.limits;
        if key.is_empty() {
            return Err(StateError::EmptyKey);
        }
        if key.len() > limits.max_key_bytes {
            return Err(StateError::KeyTooLong { len: key.len(), max: limits.max_key_bytes });
        }
        if value_json.len() > limits.max_value_bytes {
            let (len, max) = (value_json.len(), limits.max_value_bytes);
            return Err(StateError::ValueTooLarge { key: key.into(), len, max });
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&value_json) {
            return Err(StateError::NotJson { key: key.into(), reason: e.to_string() });
        }
        let expires_at_ms = match ttl_ms {
            Some(0) => return Err(StateError::ZeroTtl),
            Some(ttl) => Some(now_ms.saturating_add(ttl)),
            None => None,
        };
        let namespace = caller.namespace(scope);
        let entry = Entry { value_json, expires_at_ms, writer: caller.agent };
        self.check_quota(caller.agent, namespace, key, entry.size(key))?;
        let replaced = self.insert(namespace, key.to_string(), entry);
        Ok(Change { namespace, key: key.into(), action: Action::Stored, replaced })
    }

    /// Whether `writer` may hold `size` bytes more under `key` (replacing what is there).
    fn check_quota(&self, writer: u64, namespace: Namespace, key: &str, size: usize) -> Result<(), StateError> {
        let limits = &self.limits;
        let replaced = self.get(namespace, key);
        let mut usage = self.usage.get(&writer).copied().unwrap_or_default();
        if let Some(old) = replaced.filter(|old| old.writer == writer) {
            usage.keys -= 1;
            usage.bytes -= old.size(key);
        }
        let keys = usage.keys + 1;
        let bytes = usage.bytes + size;
        if keys > limits.max_keys_per_agent {
            return Err(StateError::KeyQuota { key: key.into(), agent: writer, keys, max: limits.max_keys_per_agent });
        }
        if bytes > limits.max_bytes_per_agent {
            let max = limits.max_bytes_per_agent;
            return Err(StateError::ByteQuota { key: key.into(), agent: writer, bytes, max });
        }
        let total = self.total_bytes - replaced.map_or(0, |old| old.size(key)) + size;
        if total > limits.max_total_bytes {
            return Err(StateError::StoreFull { key: key.into(), bytes: total, max: limits.max_total_bytes });
        }
        Ok(())
    }

    /// FETCH: the live entry the caller sees under `key` (in `scope`, or the most private), with its
    /// scope.
    pub fn fetch(&self, caller: Caller, key: &str, scope: Option<Scope>, now_ms: u64) -> Option<(Scope, &Entry)> {
        let scope = self.resolve(caller, key, scope, now_ms)?;
        Some((scope, self.get(caller.namespace(scope), key)?))
    }

    /// DELETE: removes the live entry the caller sees under `key`, as FETCH finds it.
    pub fn delete(&mut self, caller: Caller, key: &str, scope: Option<Scope>, now_ms: u64) -> Option<Change> {
        let namespace = caller.namespace(self.resolve(caller, key, scope, now_ms)?);
        let replaced = self.remove(namespace, key)?;
        Some(Change { namespace, key: key.into(), action: Action::Deleted, replaced: Some(replaced) })
    }

    fn resolve(&self, caller: Caller, key: &str, scope: Option<Scope>, now_ms: u64) -> Option<Scope> {
        let only = scope.map(|s| [s]);
        let scopes: &[Scope] = match &only {
            Some(one) => one,
            None => &Scope::LOOKUP_ORDER,
        };
        scopes.iter().copied().find(|&s| self.get(caller.namespace(s), key).is_some_and(|e| e.is_live(now_ms)))
    }

    /// KEYS: the live keys the caller sees that match `query`.
    pub fn keys(&self, caller: Caller, query: &KeyQuery<'_>, now_ms: u64) -> KeysPage {
        let limit = if query.limit == 0 { MAX_PAGE } else { query.limit.min(MAX_PAGE) };
        let start = match query.after {
            Some(after) if after >= query.prefix => Bound::Excluded(after),
            _ => Bound::Included(query.prefix),
        };
        let only = query.scope.map(|s| [s]);
        let scopes: &[Scope] = match &only {
            Some(one) => one,
            None => &Scope::LOOKUP_ORDER,
        };
        let mut keys = Vec::new();
        for &scope in scopes {
            let Some(space) = self.spaces.get(&caller.namespace(scope)) else { continue };
            // One past the limit from each namespace is enough to merge a page and know if more follow.
            let matching = space
                .range::<str, _>((start, Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(query.prefix))
                .filter(|(_, entry)| entry.is_live(now_ms))
                .take(limit + 1);
            keys.extend(matching.map(|(key, _)| (key.clone(), scope)));
        }
        keys.sort();
        let mut end = limit.min(keys.len());
        while end > 0 && end < keys.len() && keys[end].0 == keys[end - 1].0 {
            end += 1;
        }
        let more = end < keys.len();
        keys.truncate(end);
        KeysPage { keys, more }
    }

    /// Removes every entry whose time has come.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        while self.expiries.first().is_some_and(|(at, _, _)| *at <= now_ms) {
            let Some((_, namespace, key)) = self.expiries.pop_first() else { break };
            let replaced = self.remove(namespace, &key);
            changes.push(Change { namespace, key, action: Action::Expired, replaced });
        }
        changes
    }

    /// When the next entry expires, if any does.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(at, _, _)| *at)
    }

    /// Removes a whole namespace: an agent's, or a session's, once nobody can reach it.
    pub fn drop_namespace(&mut self, namespace: Namespace) {
        let keys: Vec<String> = self.spaces.get(&namespace).map(|s| s.keys().cloned().collect()).unwrap_or_default();
        for key in keys {
            self.remove(namespace, &key);
        }
    }

    /// Puts an entry, returning the one it replaced.
    fn insert(&mut self, namespace: Namespace, key: String, entry: Entry) -> Option<Entry> {
        let replaced = self.remove(namespace, &key);
        let usage = self.usage.entry(entry.writer).or_default();
        usage.keys += 1;
        usage.bytes += entry.size(&key);
        self.total_bytes += entry.size(&key);
        if let Some(at) = entry.expires_at_ms {
            self.expiries.insert((at, namespace, key.clone()));
        }
        self.spaces.entry(namespace).or_default().insert(key, entry);
        replaced
    }

    fn remove(&mut self, namespace: Namespace, key: &str) -> Option<Entry> {
        let space = self.spaces.get_mut(&namespace)?;
        let entry = space.remove(key)?;
        if space.is_empty() {
            self.spaces.remove(&namespace);
        }
        let size = entry.size(key);
        self.total_bytes -= size;
        if let Some(usage) = self.usage.get_mut(&entry.writer) {
            usage.keys -= 1;
            usage.bytes -= size;
            if usage.keys == 0 {
                self.usage.remove(&entry.writer);
            }
        }
        if let Some(at) = entry.expires_at_ms {
            self.expiries.remove(&(at, namespace, key.to_string()));
        }
        Some(entry)
    }
}
