//! Payloads of recording and replay (RECORD_START, RECORD_STOP, RECORD_STATUS, REPLAY_START,
//! REPLAY_STATUS). A recording travels as JSON text, the format `docs/services.md` describes.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// RECORD_START: record the results of the chosen syscalls (READ always) made by the agents in
/// `filter_agents`, or by every agent the caller may observe when it is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecordStartRequest {
    pub include_think: bool,
    pub include_http: bool,
    pub include_exec: bool,
    pub filter_agents: Vec<u64>,
    /// Entries kept before the recording stops growing (0: 50 000).
    pub max_entries: u32,
}

/// RECORD_STATUS; with `export`, the reply carries the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecordStatusRequest {
    pub export: bool,
}

/// The reply to RECORD_START, RECORD_STOP and RECORD_STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordStatus {
    pub recording: bool,
    pub entries: u32,
    /// Results left out because the recording was full.
    pub truncated: u64,
    pub recording_json: Option<String>,
}

/// REPLAY_START: from now on the caller's recorded syscalls are answered from the recording of
/// `source_agent_id` (which may be left out when the recording holds one agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStartRequest {
    pub recording_json: String,
    pub source_agent_id: Option<u64>,
}

/// The reply to REPLAY_START and REPLAY_STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStatus {
    pub active: bool,
    /// Recorded results served so far.
    pub position: u32,
    pub total: u32,
    /// Why the replay stopped, when the agent asked something the recording does not hold.
    pub diverged: Option<String>,
}
