//! The payload of every request and reply the runtime serves, encoded with postcard.
//!
//! Field order is wire order. Arbitrary JSON values travel as JSON text (`*_json` fields) so every
//! language can read them. `docs/protocol.md` describes each message; `tests/vectors/` holds golden
//! encodings that the Rust and the Python codecs are both tested against.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::policy::Level;

/// The payload of a frame with the `ERROR` flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// An [`ErrorCode`] number; unknown numbers must be tolerated by clients.
    pub code: u16,
    pub message: String,
}

/// Why a request failed. The numbers are also the C ABI's `clove_status` values and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The bytes are not a frame (bad magic, version or size); the connection is closed.
    BadFrame = 1,
    UnknownOpcode = 2,
    /// The payload does not decode as the opcode's request.
    BadPayload = 3,
    PermissionDenied = 4,
    NotFound = 5,
    Timeout = 6,
    LimitExceeded = 7,
    Io = 8,
    /// A known opcode that this runtime does not serve (yet).
    Unsupported = 9,
    InvalidArgument = 10,
    /// The request conflicts with the current state (a name already taken, an agent already paused).
    Conflict = 11,
    Internal = 12,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownOpcode,
        ErrorCode::BadPayload,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Timeout,
        ErrorCode::LimitExceeded,
        ErrorCode::Io,
        ErrorCode::Unsupported,
        ErrorCode::InvalidArgument,
        ErrorCode::Conflict,
        ErrorCode::Internal,
    ];

    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == value)
    }

    /// A short lowercase name, as the SDKs and the C ABI show it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownOpcode => "unknown_opcode",
            ErrorCode::BadPayload => "bad_payload",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Timeout => "timeout",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Io => "io",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
        }
    }
}

/// HELLO: the first thing a client says. `token` admits a connection whose uid is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Hello {
    pub client: String,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub protocol_version: u8,
    pub runtime_version: String,
    /// The caller's own agent id: the connection is the identity.
    pub agent_id: u64,
    pub name: String,
    pub level: Level,
    /// Names of the services this runtime serves, e.g. `"exec"`, `"spawn"`.
    pub features: Vec<String>,
}

/// NOOP: the runtime echoes `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Echo {
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// EXEC: run a program on behalf of the calling agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    /// The program and its arguments. Empty when `command` is used.
    pub argv: Vec<String>,
    /// A command line. Run by `/bin/sh -c` only when the agent's policy allows a shell; otherwise it
    /// is split into words (quotes respected) and refused if it uses shell syntax.
    pub command: Option<String>,
    pub cwd: Option<String>,
    pub env: Vec<KeyValue>,
    pub stdin: Vec<u8>,
    /// Killed (with its whole process group) after this long; capped by the policy.
    pub timeout_ms: Option<u32>,
    /// Bytes kept of stdout and of stderr each; the rest is dropped and `truncated` set.
    pub max_output: Option<u32>,
    /// Answer [`Accepted`] at once and deliver the [`ExecReply`] through ASYNC_POLL.
    pub run_async: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReply {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub duration_ms: u64,
}

/// The reply to a request made with `run_async`: its result will come through ASYNC_POLL under the
/// request id of the frame that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub request_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AsyncPollRequest {
    pub max: u32,
}

impl AsyncPollRequest {
    /// How many of `waiting` (oldest first) one reply takes: at most `max` (0: 10), as many as fit
    /// `room` bytes of reply, and always the first (each result was sized to fit a frame alone).
    pub fn batch_len(&self, waiting: &[AsyncResult], room: usize) -> usize {
        let max = if self.max == 0 { 10 } else { self.max as usize };
        let mut size = 0;
        waiting
            .iter()
            .take(max)
            .take_while(|r| {
                size += r.payload.len() + r.error.as_ref().map_or(0, |e| e.message.len()) + 32;
                size <= room
            })
            .count()
            .max(1)
            .min(waiting.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncResult {
    pub request_id: u32,
    pub opcode: u8,
    /// `Some` when the request failed; `payload` is then empty.
    pub error: Option<ErrorReply>,
    /// The encoded reply the request would have had if made synchronously.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPollReply {
    pub results: Vec<AsyncResult>,
}

/// READ a file, or a window of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReadRequest {
    pub path: String,
    pub offset: u64,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    pub content: Vec<u8>,
    /// The whole file's size, which may exceed `content`.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WriteRequest {
    pub path: String,
    pub content: Vec<u8>,
    pub append: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    pub bytes_written: u64,
}

/// Resource limits of a spawned agent. Stored now; enforced by the sandbox tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limits {
    pub memory: Option<u64>,
    pub max_pids: Option<u32>,
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartSpec {
    pub policy: RestartPolicy,
    pub max_restarts: u32,
    pub window_s: u32,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec { policy: RestartPolicy::Never, max_restarts: 5, window_s: 300 }
    }
}

/// SPAWN a child agent. Either `argv`, or `script` run by `interpreter` (default `python3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SpawnRequest {
    pub name: String,
    pub argv: Vec<String>,
    pub script: Option<String>,
    pub interpreter: Option<String>,
    pub env: Vec<KeyValue>,
    pub cwd: Option<String>,
    /// The child's level; at most the parent's. Default: the parent's level or `standard`, the lower.
    pub level: Option<Level>,
    pub sandboxed: bool,
    pub network: bool,
    pub limits: Limits,
    pub restart: RestartSpec,
    /// Run it in its own microVM instead of a process sandbox (its memory limit is the VM's RAM).
    pub vm: Option<VmSpec>,
}

/// The shape of an agent's microVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub vcpus: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Running,
    Paused,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnReply {
    pub id: u64,
    pub name: String,
    pub pid: u32,
    pub state: AgentState,
}

/// Names an agent by id or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Id(u64),
    Name(String),
}

/// KILL, PAUSE and RESUME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub agent_id: u64,
}

/// How an agent's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub id: u64,
    pub name: String,
    pub pid: u32,
    pub state: AgentState,
    pub uptime_ms: u64,
    /// `None` when the agent runs with custom permissions.
    pub level: Option<Level>,
    pub parent: Option<u64>,
    pub exit: Option<ExitInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    pub agents: Vec<AgentInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermsReply {
    pub agent_id: u64,
    /// `None` when the current permissions are custom.
    pub level: Option<Level>,
    /// The most this agent may raise itself to; `None` when custom.
    pub ceiling: Option<Level>,
    /// The effective permissions in the seed's JSON shape (`can_exec`, `filesystem`, ...).
    pub permissions_json: String,
}

/// SET_PERMS on the caller (no `agent_id`) or on one of its descendants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SetPermsRequest {
    pub agent_id: Option<u64>,
    pub level: Option<Level>,
    /// Custom permissions in the seed's JSON shape; always bounded by the target's ceiling.
    pub permissions_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditQuery {
    pub category: Option<String>,
    pub agent_id: Option<u64>,
    pub since_id: Option<u64>,
    pub limit: u32,
}

/// SET_AUDIT_CONFIG: the categories to change (the others keep their setting) and the number of
/// entries to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SetAuditConfigRequest {
    pub log_syscalls: Option<bool>,
    pub log_security: Option<bool>,
    pub log_lifecycle: Option<bool>,
    pub log_ipc: Option<bool>,
    pub log_state: Option<bool>,
    pub log_resource: Option<bool>,
    pub log_network: Option<bool>,
    pub log_world: Option<bool>,
    pub max_entries: Option<u32>,
}

/// The audit configuration after SET_AUDIT_CONFIG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditConfigReply {
    pub config: crate::audit::AuditConfig,
    pub max_entries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLogReply {
    pub entries: Vec<crate::audit::AuditEntry>,
}

/// METRICS_AGENT and METRICS_CGROUP: one agent (the caller when `agent_id` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MetricsRequest {
    pub agent_id: Option<u64>,
}

/// How often an agent made one kind of request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallCount {
    pub opcode: u8,
    pub count: u64,
}

/// What an agent's cgroup has counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CgroupMetrics {
    pub cpu_usage_us: u64,
    pub cpu_throttled_us: u64,
    pub nr_throttled: u64,
    pub memory_current: u64,
    pub memory_peak: u64,
    pub pids_current: u64,
    pub oom_kills: u64,
}

/// One agent's metrics: its process as `/proc` sees it, the requests it made, and its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMetrics {
    pub agent_id: u64,
    pub name: String,
    pub state: AgentState,
    pub pid: u32,
    pub uptime_ms: u64,
    /// CPU time of the agent's main process.
    pub cpu_time_us: u64,
    pub rss_bytes: u64,
    pub threads: u32,
    pub fds: u32,
    /// Requests by opcode, unknown opcodes included.
    pub syscalls: Vec<SyscallCount>,
    /// `None` when the agent has no cgroup of its own.
    pub cgroup: Option<CgroupMetrics>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllAgentMetrics {
    pub agents: Vec<AgentMetrics>,
}

/// METRICS_SYSTEM: the host as `/proc` sees it, and the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMetrics {
    pub cpu_count: u32,
    /// Load averages over 1, 5 and 15 minutes, times 1000.
    pub load_avg_milli: Vec<u32>,
    pub memory_total: u64,
    pub memory_available: u64,
    pub uptime_ms: u64,
    pub agents_running: u32,
    /// The resident memory of the host process the runtime lives in.
    pub runtime_rss_bytes: u64,
}

/// THINK: ask the runtime's LLM provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThinkRequest {
    pub prompt: String,
    pub image: Option<ThinkImage>,
    pub system_instruction: Option<String>,
    /// The sampling temperature times 1000 (700 for 0.7); the provider's default when `None`.
    pub temperature_milli: Option<u32>,
    /// Overrides the provider's configured model.
    pub model: Option<String>,
    /// The most output tokens; also capped by what the agent's quota has left.
    pub max_tokens: Option<u32>,
    /// The seed's `thinking_level`: Gemini's `thinkingLevel`, OpenAI's `reasoning_effort`.
    pub thinking_level: Option<String>,
    /// Answer [`Accepted`] at once and deliver the [`ThinkReply`] through ASYNC_POLL.
    pub run_async: bool,
}

/// An image sent with a THINK prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThinkImage {
    pub data: Vec<u8>,
    /// `image/png`, `image/jpeg`, ...
    pub mime_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThinkReply {
    pub text: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// `openai`, `gemini`, `anthropic` or `host`.
    pub provider: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// HTTP: a request the runtime makes on the agent's behalf, within its network allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpRequest {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// `GET`, `POST`, ...; empty means `GET`.
    pub method: String,
    pub headers: Vec<KeyValue>,
    pub body: Vec<u8>,
    /// For the whole request, redirects included (default 30 s, at most 300 s).
    pub timeout_ms: Option<u32>,
    /// Body bytes kept; the rest is dropped and `truncated` set. Also capped by the frame size.
    pub max_response_bytes: Option<u32>,
    /// Answer [`Accepted`] at once and deliver the [`HttpReply`] through ASYNC_POLL.
    pub run_async: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpReply {
    pub status: u16,
    /// Response headers in the order received, names in lower case.
    pub headers: Vec<KeyValue>,
    pub body: Vec<u8>,
    pub truncated: bool,
    /// The URL that answered, after redirects.
    pub url: String,
}
