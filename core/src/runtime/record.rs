//! Record and replay: a recording keeps the results of agents' syscalls that reach outside the
//! runtime (READ always; EXEC, THINK and HTTP when asked); an agent replaying it gets those results
//! back for the same requests, in the same order, so its run is reproduced offline.
//!
//! A replayed request still passes the agent's live policy first: a recording can only hand an
//! agent results it could have had itself. A request that does not match the next recorded one
//! ends the replay with an error naming both, rather than running live by surprise.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reactor::Reactor;
use super::{AgentId, Result, RuntimeError};
use crate::protocol::*;

const DEFAULT_MAX_ENTRIES: usize = 50_000;
/// The export format's version; an import of another version is refused.
const FORMAT_VERSION: u32 = 1;

/// One recorded result, as exported: the typed request and reply as JSON, so a recording can be
/// read and edited (a different model answer, a file's other content).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    agent_id: u64,
    agent_name: String,
    opcode: String,
    /// Asked with `run_async`: replayed as `Accepted`, the result through ASYNC_POLL.
    #[serde(rename = "async")]
    run_async: bool,
    request: Value,
    reply: Option<Value>,
    error: Option<ErrorReply>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Export {
    version: u32,
    /// The syscalls the recording holds; a replay answers only these from it.
    opcodes: Vec<String>,
    entries: Vec<Entry>,
}

/// A request whose result has not come yet.
struct Pending {
    op: Opcode,
    request: Vec<u8>,
    run_async: bool,
}

pub(super) struct Recording {
    recorder: AgentId,
    /// Empty: every agent the recorder may observe.
    agents: Vec<AgentId>,
    opcodes: Vec<Opcode>,
    max_entries: usize,
    active: bool,
    entries: Vec<Entry>,
    truncated: u64,
    pending: BTreeMap<(AgentId, u32), Pending>,
}

pub(super) struct Replay {
    opcodes: Vec<Opcode>,
    entries: VecDeque<Entry>,
    total: u32,
    diverged: Option<String>,
}

impl Replay {
    fn status(&self) -> ReplayStatus {
        ReplayStatus {
            active: self.diverged.is_none(),
            position: self.total - self.entries.len() as u32,
            total: self.total,
            diverged: self.diverged.clone(),
        }
    }
}

/// A payload of `op` as JSON, through its typed message.
fn to_json(op: Opcode, bytes: &[u8], request: bool) -> Result<Value> {
    fn typed<'a, T: Deserialize<'a> + Serialize>(bytes: &'a [u8]) -> Result<Value> {
        let value: T = decode(bytes).map_err(|e| RuntimeError::Internal(format!("recording a payload: {e}")))?;
        serde_json::to_value(value).map_err(|e| RuntimeError::Internal(format!("recording a payload: {e}")))
    }
    match (op, request) {
        (Opcode::READ, true) => typed::<ReadRequest>(bytes),
        (Opcode::READ, false) => typed::<ReadReply>(bytes),
        (Opcode::EXEC, true) => typed::<ExecRequest>(bytes),
        (Opcode::EXEC, false) => typed::<ExecReply>(bytes),
        (Opcode::THINK, true) => typed::<ThinkRequest>(bytes),
        (Opcode::THINK, false) => typed::<ThinkReply>(bytes),
        (Opcode::HTTP, true) => typed::<HttpRequest>(bytes),
        (Opcode::HTTP, false) => typed::<HttpReply>(bytes),
        _ => Err(RuntimeError::Internal(format!("{} is not recorded", op.name()))),
    }
}

/// The payload of `op` a recorded JSON value stands for.
fn from_json(op: Opcode, value: &Value, request: bool) -> Result<Vec<u8>> {
    fn typed<T: serde::de::DeserializeOwned + Serialize>(value: &Value) -> Result<Vec<u8>> {
        let typed: T = serde_json::from_value(value.clone())
            .map_err(|e| RuntimeError::InvalidArgument(format!("a recorded payload does not fit: {e}")))?;
        Ok(encode(&typed))
    }
    match (op, request) {
        (Opcode::READ, true) => typed::<ReadRequest>(value),
        (Opcode::READ, false) => typed::<ReadReply>(value),
        (Opcode::EXEC, true) => typed::<ExecRequest>(value),
        (Opcode::EXEC, false) => typed::<ExecReply>(value),
        (Opcode::THINK, true) => typed::<ThinkRequest>(value),
        (Opcode::THINK, false) => typed::<ThinkReply>(value),
        (Opcode::HTTP, true) => typed::<HttpRequest>(value),
        (Opcode::HTTP, false) => typed::<HttpReply>(value),
        _ => Err(RuntimeError::InvalidArgument(format!("{} cannot be replayed", op.name()))),
    }
}

/// Whether a request asks for its result through ASYNC_POLL.
fn is_async(op: Opcode, payload: &[u8]) -> bool {
    match op {
        Opcode::EXEC => decode::<ExecRequest>(payload).is_ok_and(|r| r.run_async),
        Opcode::THINK => decode::<ThinkRequest>(payload).is_ok_and(|r| r.run_async),
        Opcode::HTTP => decode::<HttpRequest>(payload).is_ok_and(|r| r.run_async),
        _ => false,
    }
}

fn opcode_named(name: &str) -> Result<Opcode> {
    Opcode::ALL
        .iter()
        .copied()
        .find(|op| op.name() == name)
        .ok_or_else(|| RuntimeError::InvalidArgument(format!("unknown opcode {name} in the recording")))
}

impl Reactor {
    pub(super) fn record_start(&mut self, id: AgentId, req: RecordStartRequest) -> Result<RecordStatus> {
        if self.recording.as_ref().is_some_and(|r| r.active) {
            return Err(RuntimeError::Conflict("a recording is already running: stop it first".into()));
        }
        let agents: Vec<AgentId> = req.filter_agents.iter().map(|&a| AgentId(a)).collect();
        if let Some(hidden) = agents.iter().find(|&&a| !self.sees(id, a)) {
            return Err(crate::policy::Denial::NotDescendant(hidden.0).into());
        }
        let mut opcodes = vec![Opcode::READ];
        for (wanted, op) in
            [(req.include_exec, Opcode::EXEC), (req.include_think, Opcode::THINK), (req.include_http, Opcode::HTTP)]
        {
            if wanted {
                opcodes.push(op);
            }
        }
        let max_entries = if req.max_entries == 0 { DEFAULT_MAX_ENTRIES } else { req.max_entries as usize };
        self.recording = Some(Recording {
            recorder: id,
            agents,
            opcodes,
            max_entries,
            active: true,
            entries: Vec::new(),
            truncated: 0,
            pending: BTreeMap::new(),
        });
        self.record(id, "syscall", "RECORD_START", true, serde_json::json!({ "filter_agents": req.filter_agents }));
        self.record_status(false)
    }

    pub(super) fn record_stop(&mut self, id: AgentId) -> Result<RecordStatus> {
        match self.recording.as_mut() {
            Some(r) if r.active && (r.recorder == id || self.agents.get(r.recorder).is_none()) => r.active = false,
            Some(r) if r.active => {
                return Err(RuntimeError::Conflict(format!("the recording belongs to agent {}", r.recorder)))
            }
            _ => return Err(RuntimeError::Conflict("no recording is running".into())),
        }
        self.record_status(false)
    }

    pub(super) fn record_status(&self, export: bool) -> Result<RecordStatus> {
        let Some(r) = &self.recording else {
            return Ok(RecordStatus { recording: false, entries: 0, truncated: 0, recording_json: None });
        };
        let recording_json = export.then(|| {
            let opcodes = r.opcodes.iter().map(|op| op.name().to_string()).collect();
            serde_json::to_string(&Export { version: FORMAT_VERSION, opcodes, entries: r.entries.clone() })
        });
        Ok(RecordStatus {
            recording: r.active,
            entries: r.entries.len() as u32,
            truncated: r.truncated,
            recording_json: recording_json.transpose().map_err(|e| RuntimeError::Internal(e.to_string()))?,
        })
    }

    /// The recording of `agent`'s `op`, if one is running and covers it.
    fn records(&self, agent: AgentId, op: Opcode) -> bool {
        let Some(r) = self.recording.as_ref().filter(|r| r.active && r.opcodes.contains(&op)) else {
            return false;
        };
        if r.agents.is_empty() {
            self.sees(r.recorder, agent)
        } else {
            r.agents.contains(&agent)
        }
    }

    /// Notes a served request: its result now, or where its result will come from.
    pub(super) fn note_served(
        &mut self,
        id: AgentId,
        op: Opcode,
        request_id: u32,
        payload: &[u8],
        answer: std::result::Result<Option<&[u8]>, ErrorReply>,
    ) {
        if !self.records(id, op) {
            return;
        }
        let run_async = is_async(op, payload);
        let Some(r) = self.recording.as_mut() else { return };
        match answer {
            Ok(Some(_)) if run_async => {
                r.pending.insert((id, request_id), Pending { op, request: payload.to_vec(), run_async });
            }
            Ok(None) => {
                r.pending.insert((id, request_id), Pending { op, request: payload.to_vec(), run_async });
            }
            Ok(Some(reply)) => self.add_entry(id, Pending { op, request: payload.to_vec(), run_async }, Ok(reply)),
            Err(error) => self.add_entry(id, Pending { op, request: payload.to_vec(), run_async }, Err(error)),
        }
    }

    /// Notes the result of a request that was answered later (or through ASYNC_POLL).
    pub(super) fn note_result(&mut self, id: AgentId, request_id: u32, result: std::result::Result<&[u8], ErrorReply>) {
        let pending = self.recording.as_mut().and_then(|r| r.pending.remove(&(id, request_id)));
        if let Some(pending) = pending {
            self.add_entry(id, pending, result);
        }
    }

    fn add_entry(&mut self, id: AgentId, pending: Pending, result: std::result::Result<&[u8], ErrorReply>) {
        let agent_name = self.agents.get(id).map(|a| a.name.clone()).unwrap_or_default();
        let request = to_json(pending.op, &pending.request, true);
        let (reply, error) = match result {
            Ok(bytes) => (Some(to_json(pending.op, bytes, false)), None),
            Err(error) => (None, Some(error)),
        };
        let Some(r) = self.recording.as_mut() else { return };
        if r.entries.len() >= r.max_entries {
            r.truncated += 1;
            return;
        }
        // Payloads the runtime made itself always decode; one that does not is left out, not guessed.
        let (Ok(request), Ok(reply)) = (request, reply.transpose()) else { return };
        let seq = r.entries.len() as u64 + 1;
        r.entries.push(Entry {
            seq,
            agent_id: id.0,
            agent_name,
            opcode: pending.op.name().into(),
            run_async: pending.run_async,
            request,
            reply,
            error,
        });
    }

    pub(super) fn replay_start(&mut self, id: AgentId, req: ReplayStartRequest) -> Result<ReplayStatus> {
        let export: Export = serde_json::from_str(&req.recording_json)
            .map_err(|e| RuntimeError::InvalidArgument(format!("not a Clove recording: {e}")))?;
        if export.version != FORMAT_VERSION {
            return Err(RuntimeError::InvalidArgument(format!(
                "recording format {} (this runtime reads {FORMAT_VERSION})",
                export.version
            )));
        }
        let opcodes = export.opcodes.iter().map(|name| opcode_named(name)).collect::<Result<Vec<_>>>()?;
        let mut sources: Vec<u64> = export.entries.iter().map(|e| e.agent_id).collect();
        sources.sort_unstable();
        sources.dedup();
        let source = match (req.source_agent_id, sources.as_slice()) {
            (Some(source), _) => source,
            (None, [only]) => *only,
            (None, []) => 0,
            (None, _) => {
                return Err(RuntimeError::InvalidArgument(format!(
                    "the recording holds agents {sources:?}: name the one to replay"
                )))
            }
        };
        let entries: VecDeque<Entry> = export.entries.into_iter().filter(|e| e.agent_id == source).collect();
        // Every entry must stand for a payload this runtime can answer with, before any is used.
        for entry in &entries {
            let op = opcode_named(&entry.opcode)?;
            from_json(op, &entry.request, true)?;
            if let Some(reply) = &entry.reply {
                from_json(op, reply, false)?;
            }
        }
        let replay = Replay { opcodes, total: entries.len() as u32, entries, diverged: None };
        let status = replay.status();
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        agent.replay = Some(replay);
        self.record(
            id,
            "syscall",
            "REPLAY_START",
            true,
            serde_json::json!({ "source": source, "total": status.total }),
        );
        Ok(status)
    }

    pub(super) fn replay_status(&self, id: AgentId) -> Result<ReplayStatus> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok(agent
            .replay
            .as_ref()
            .map_or(ReplayStatus { active: false, position: 0, total: 0, diverged: None }, Replay::status))
    }

    /// Answers a replaying agent's request from its recording, appending the reply frame to `out`;
    /// `false` when the request runs live (no replay, or a syscall the recording does not hold).
    pub(super) fn replayed(
        &mut self,
        id: AgentId,
        op: Opcode,
        request_id: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(replay) = self.agents.get(id).and_then(|a| a.replay.as_ref()) else { return false };
        if replay.diverged.is_some() || !replay.opcodes.contains(&op) {
            return false;
        }
        if let Err(denied) = self.replay_allowed(id, op, payload) {
            write_error(out, op as u8, request_id, &denied.to_reply());
            return true;
        }
        let Some(replay) = self.agents.get_mut(id).and_then(|a| a.replay.as_mut()) else { return false };
        let matches = |entry: &Entry| {
            entry.opcode == op.name() && from_json(op, &entry.request, true).is_ok_and(|bytes| bytes == payload)
        };
        let entry = match replay.entries.front() {
            Some(next) if matches(next) => replay.entries.pop_front(),
            _ => None,
        };
        let Some(entry) = entry else {
            let next = replay.entries.front();
            let expected = next.map_or("nothing more".to_string(), |e| format!("{} #{}", e.opcode, e.seq));
            let why = format!("replay diverged: the recording has {expected}, the agent asked {}", op.name());
            replay.diverged = Some(why.clone());
            write_error(out, op as u8, request_id, &RuntimeError::Conflict(why).to_reply());
            return true;
        };
        let reply = entry.reply.as_ref().and_then(|r| from_json(op, r, false).ok());
        let result = match (reply, entry.error) {
            (Some(bytes), _) => Ok(bytes),
            (None, Some(error)) => Err(error),
            (None, None) => Err(RuntimeError::Internal("a recorded entry without a result".into()).to_reply()),
        };
        if entry.run_async {
            if let Some(agent) = self.agents.get_mut(id) {
                let (error, payload) = match result {
                    Ok(bytes) => (None, bytes),
                    Err(error) => (Some(error), Vec::new()),
                };
                agent.async_results.push_back(AsyncResult { request_id, opcode: op as u8, error, payload });
            }
            write_reply(out, op as u8, request_id, &Accepted { request_id });
        } else {
            match result {
                Ok(bytes) => frame::write_frame(out, op as u8, frame::flags::REPLY, request_id, &bytes),
                Err(error) => write_error(out, op as u8, request_id, &error),
            }
        }
        true
    }

    /// The live policy's word on a request about to be answered from a recording.
    fn replay_allowed(&self, id: AgentId, op: Opcode, payload: &[u8]) -> Result<()> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let bad = |e: PayloadError| RuntimeError::BadPayload(format!("{} request: {e}", op.name()));
        match op {
            Opcode::READ => {
                let req: ReadRequest = decode(payload).map_err(bad)?;
                agent.policy.check_read(&req.path)?;
            }
            Opcode::EXEC => {
                let req: ExecRequest = decode(payload).map_err(bad)?;
                agent.policy.plan_exec(&req.argv, req.command.as_deref())?;
            }
            Opcode::THINK => agent.policy.check_think()?,
            Opcode::HTTP => self.http_allowed(id, decode(payload).map_err(bad)?)?,
            _ => return Err(RuntimeError::Unsupported(op)),
        }
        Ok(())
    }
}
