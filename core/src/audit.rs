//! The audit log: a bounded, queryable record of every denial and every lifecycle change.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::protocol::AuditQuery;

/// One audit record. `details_json` is a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub timestamp_ms: u64,
    /// `security` (denials), `lifecycle` (spawn, exit, kill, pause, resume, level changes),
    /// `syscall`, `ipc`, `state`, `resource`, `network`: the categories of [`AuditConfig`].
    pub category: String,
    pub event: String,
    pub agent_id: u64,
    pub agent_name: String,
    pub success: bool,
    pub details_json: String,
}

/// The most entries a query returns.
pub const MAX_QUERY_LIMIT: u32 = 1_000;

/// Which categories are written to the log (SET_AUDIT_CONFIG), with the seed's names. Every
/// category is on by default except `syscalls`, an entry for every request served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditConfig {
    pub log_syscalls: bool,
    pub log_security: bool,
    pub log_lifecycle: bool,
    pub log_ipc: bool,
    pub log_state: bool,
    pub log_resource: bool,
    pub log_network: bool,
    pub log_world: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            log_syscalls: false,
            log_security: true,
            log_lifecycle: true,
            log_ipc: true,
            log_state: true,
            log_resource: true,
            log_network: true,
            log_world: true,
        }
    }
}

impl AuditConfig {
    /// Whether entries of `category` are logged; categories it does not name always are.
    pub fn logs(&self, category: &str) -> bool {
        match category {
            "syscall" => self.log_syscalls,
            "security" => self.log_security,
            "lifecycle" => self.log_lifecycle,
            "ipc" => self.log_ipc,
            "state" => self.log_state,
            "resource" => self.log_resource,
            "network" => self.log_network,
            "world" => self.log_world,
            _ => true,
        }
    }
}

/// A ring of the newest entries; ids keep increasing as old entries fall off.
#[derive(Debug)]
pub struct AuditLog {
    entries: VecDeque<AuditEntry>,
    capacity: usize,
    next_id: u64,
}

impl AuditLog {
    pub fn new(capacity: usize) -> Self {
        AuditLog { entries: VecDeque::new(), capacity: capacity.max(1), next_id: 1 }
    }

    /// Takes back the entries of an earlier run (oldest first): the newest `capacity` are kept,
    /// and new ids continue after theirs.
    pub fn restore(&mut self, entries: Vec<AuditEntry>) {
        for entry in entries {
            self.next_id = self.next_id.max(entry.id + 1);
            if self.entries.len() == self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back(entry);
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps at most `capacity` entries from now on, dropping the oldest beyond it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// Appends an entry, dropping the oldest when full; returns the entry as recorded.
    pub fn record(&mut self, mut entry: AuditEntry) -> &AuditEntry {
        entry.id = self.next_id;
        self.next_id += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        // INVARIANT: an entry was pushed on the line above.
        &self.entries[self.entries.len() - 1]
    }

    /// Entries matching the query, oldest first, at most `limit` (0 means the default of 100).
    pub fn query(&self, q: &AuditQuery) -> Vec<AuditEntry> {
        let limit = match q.limit {
            0 => 100,
            n => n.min(MAX_QUERY_LIMIT),
        } as usize;
        let matching = self.entries.iter().filter(|e| {
            q.category.as_deref().is_none_or(|c| e.category == c)
                && q.agent_id.is_none_or(|a| e.agent_id == a)
                && q.since_id.is_none_or(|s| e.id > s)
        });
        let all: Vec<&AuditEntry> = matching.collect();
        all[all.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn entry(category: &str, agent_id: u64) -> AuditEntry {
        AuditEntry {
            id: 0,
            timestamp_ms: 5,
            category: category.to_string(),
            event: "x".to_string(),
            agent_id,
            agent_name: "a".to_string(),
            success: false,
            details_json: "{}".to_string(),
        }
    }

    #[test]
    fn filters_and_keeps_the_newest() {
        let mut log = AuditLog::new(3);
        for (c, a) in [("security", 1), ("lifecycle", 2), ("security", 2), ("security", 1)] {
            log.record(entry(c, a));
        }
        let all = log.query(&AuditQuery::default());
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3, 4]);
        let sec = log.query(&AuditQuery { category: Some("security".to_string()), ..Default::default() });
        assert_eq!(sec.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4]);
        let by_agent = log.query(&AuditQuery { agent_id: Some(2), since_id: Some(2), ..Default::default() });
        assert_eq!(by_agent.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
        let last = log.query(&AuditQuery { limit: 1, ..Default::default() });
        assert_eq!(last[0].id, 4);
    }
}
