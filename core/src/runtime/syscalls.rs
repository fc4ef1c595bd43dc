//! Serving requests: every frame is decoded as its opcode's request, passed through the caller's
//! policy, served, and answered on its request id. Denials are audited.

use std::time::Duration;

use super::agents::Agent;
use super::bus::{Audience, EventType};
use super::exec::{ExecCaller, ExecJob, ExecSpec, DEFAULT_MAX_OUTPUT};
use super::reactor::Reactor;
use super::{fs, metrics, AgentId, AgentStdio, Result, RuntimeError, SpawnSpec};
use crate::policy::{AgentPolicy, Denial, Level};
use crate::protocol::frame::PROTOCOL_VERSION;
use crate::protocol::*;

/// Results waiting for ASYNC_POLL, plus async jobs still running, per agent.
const MAX_ASYNC_PENDING: usize = 64;
/// Reply overhead kept free under the frame cap when sizing a READ.
const REPLY_OVERHEAD: u64 = 64;

/// Services a client may ask HELLO about.
const FEATURES: &[&str] = &[
    "exec",
    "read",
    "write",
    "spawn",
    "kill",
    "list",
    "pause",
    "resume",
    "permissions",
    "audit",
    "async",
    "metrics",
    "ipc",
    "events",
    "record",
    "state",
    "think",
    "http",
];

/// How a request is answered.
enum Answer {
    /// Now, with this reply payload.
    Now(Vec<u8>),
    /// Now, with the request's own payload (NOOP).
    Echo,
    /// Now, then the connection closes.
    Closing(Vec<u8>),
    /// Later, by whatever finishes the work.
    Later,
}

fn now<T: serde::Serialize>(reply: &T) -> Result<Answer> {
    Ok(Answer::Now(encode(reply)))
}

/// A request handed to a worker: answered later, or accepted now when async.
fn later(accepted: Option<Accepted>) -> Result<Answer> {
    accepted.map_or(Ok(Answer::Later), |a| now(&a))
}

/// An [`Echo`] checked in place, without copying its bytes.
#[derive(serde::Deserialize)]
struct EchoView<'a> {
    #[serde(borrow)]
    _data: &'a [u8],
}

pub(super) fn request<'a, T: serde::Deserialize<'a>>(payload: &'a [u8], op: Opcode) -> Result<T> {
    decode(payload).map_err(|e| RuntimeError::BadPayload(format!("{} request: {e}", op.name())))
}

impl Reactor {
    pub(super) fn handle_frame(&mut self, id: AgentId, header: FrameHeader, payload: &[u8], out: &mut Vec<u8>) {
        let request_id = header.request_id;
        if let Some(agent) = self.agents.get_mut(id) {
            *agent.syscalls.entry(header.opcode).or_default() += 1;
        }
        let Some(op) = Opcode::from_u8(header.opcode) else {
            let message = format!("unknown opcode 0x{:02x}", header.opcode);
            write_error(out, header.opcode, request_id, &ErrorReply { code: ErrorCode::UnknownOpcode as u16, message });
            return;
        };
        let admitted = self.agents.get(id).and_then(|a| a.conn.as_ref()).is_some_and(|c| c.admitted);
        if admitted && self.replayed(id, op, request_id, payload, out) {
            return;
        }
        let answer = if admitted || op == Opcode::HELLO {
            self.serve(id, op, request_id, payload)
        } else {
            Err(RuntimeError::NotAdmitted("present the token with HELLO first"))
        };
        if answer.is_ok() && self.config.audit_config.log_syscalls {
            self.record(id, "syscall", op.name(), true, serde_json::json!({ "request_id": request_id }));
        }
        let served = match &answer {
            Ok(Answer::Now(reply)) => Ok(Some(reply.as_slice())),
            Ok(_) => Ok(None),
            Err(error) => Err(error.to_reply()),
        };
        self.note_served(id, op, request_id, payload, served);
        match answer {
            Ok(Answer::Now(reply)) => frame::write_frame(out, op as u8, frame::flags::REPLY, request_id, &reply),
            Ok(Answer::Echo) => frame::write_frame(out, op as u8, frame::flags::REPLY, request_id, payload),
            Ok(Answer::Closing(reply)) => {
                frame::write_frame(out, op as u8, frame::flags::REPLY, request_id, &reply);
                self.mark_closing(id);
            }
            Ok(Answer::Later) => {}
            Err(error) => {
                if error.code() == ErrorCode::PermissionDenied || !admitted {
                    self.record(id, "security", op.name(), false, serde_json::json!({ "error": error.to_string() }));
                }
                if error.code() == ErrorCode::PermissionDenied {
                    let data =
                        serde_json::json!({ "agent_id": id.0, "syscall": op.name(), "error": error.to_string() });
                    self.emit(id, EventType::SyscallBlocked, data, Audience::ObserversOf(id));
                }
                write_error(out, op as u8, request_id, &error.to_reply());
                if !admitted {
                    self.mark_closing(id);
                }
            }
        }
    }

    fn mark_closing(&mut self, id: AgentId) {
        if let Some(conn) = self.agents.get_mut(id).and_then(|a| a.conn.as_mut()) {
            conn.closing = true;
        }
    }

    fn caller(&self, id: AgentId) -> Result<&Agent> {
        self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    fn serve(&mut self, id: AgentId, op: Opcode, request_id: u32, payload: &[u8]) -> Result<Answer> {
        // A VM agent's guest serves these itself; on the host they would run outside its VM.
        let in_guest = matches!(op, Opcode::EXEC | Opcode::READ | Opcode::WRITE | Opcode::SPAWN);
        if in_guest && self.agents.get(id).and_then(|a| a.process.as_ref()).is_some_and(|p| p.is_vm()) {
            return Err(Denial::GuestOnly(op.name()).into());
        }
        match op {
            Opcode::HELLO => self.hello(id, request(payload, op)?),
            Opcode::NOOP => {
                request::<EchoView>(payload, op)?;
                Ok(Answer::Echo)
            }
            Opcode::EXEC => self.exec(id, request_id, request(payload, op)?),
            Opcode::THINK => later(self.think(id, request_id, request(payload, op)?)?),
            Opcode::HTTP => later(self.http(id, request_id, request(payload, op)?)?),
            Opcode::READ => {
                let cap = u64::from(self.config.max_payload).saturating_sub(REPLY_OVERHEAD);
                let agent = self.caller(id)?;
                now(&fs::read(&agent.policy, &agent.view(), &request(payload, op)?, cap)?)
            }
            Opcode::WRITE => {
                let agent = self.caller(id)?;
                now(&fs::write(&agent.policy, &agent.view(), &request(payload, op)?)?)
            }
            Opcode::SPAWN => self.spawn_child(id, request(payload, op)?),
            Opcode::KILL | Opcode::PAUSE | Opcode::RESUME => {
                let req: ControlRequest = request(payload, op)?;
                let target = self.control_target(id, &req.target)?;
                match op {
                    Opcode::KILL => self.kill_agent(target)?,
                    Opcode::PAUSE => self.set_paused(target, true)?,
                    _ => self.set_paused(target, false)?,
                }
                now(&ControlReply { agent_id: target.0 })
            }
            Opcode::LIST => now(&ListReply { agents: self.list() }),
            Opcode::EXIT => Ok(Answer::Closing(Vec::new())),
            Opcode::STORE | Opcode::FETCH | Opcode::DELETE | Opcode::KEYS => {
                Ok(self.serve_state(id, op, request_id, payload)?.map_or(Answer::Later, Answer::Now))
            }
            Opcode::GET_PERMS => now(&self.perms_reply(id)?),
            Opcode::SET_PERMS => self.set_perms(id, request(payload, op)?),
            Opcode::RECORD_START => now(&self.record_start(id, request(payload, op)?)?),
            Opcode::RECORD_STOP => now(&self.record_stop(id)?),
            Opcode::RECORD_STATUS => {
                let req: RecordStatusRequest = request(payload, op)?;
                now(&self.record_status(req.export)?)
            }
            Opcode::REPLAY_START => now(&self.replay_start(id, request(payload, op)?)?),
            Opcode::REPLAY_STATUS => now(&self.replay_status(id)?),
            Opcode::GET_AUDIT_LOG => self.audit_log(id, request(payload, op)?),
            Opcode::SET_AUDIT_CONFIG => now(&self.set_audit_config(id, request(payload, op)?)?),
            Opcode::ASYNC_POLL => {
                let req: AsyncPollRequest = request(payload, op)?;
                let room = (self.config.max_payload as usize).saturating_sub(REPLY_OVERHEAD as usize);
                let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
                let take = req.batch_len(agent.async_results.make_contiguous(), room);
                now(&AsyncPollReply { results: agent.async_results.drain(..take).collect() })
            }
            Opcode::REGISTER => now(&self.register_name(id, request(payload, op)?)?),
            Opcode::SEND => now(&self.send_message(id, request(payload, op)?)?),
            Opcode::RECV => match self.recv_messages(id, request_id, request(payload, op)?)? {
                Some(reply) => now(&reply),
                None => Ok(Answer::Later),
            },
            Opcode::BROADCAST => now(&self.broadcast(id, request(payload, op)?)?),
            Opcode::SUBSCRIBE => now(&self.subscribe(id, request(payload, op)?, true)?),
            Opcode::UNSUBSCRIBE => now(&self.subscribe(id, request(payload, op)?, false)?),
            Opcode::POLL_EVENTS => now(&self.poll_events(id, request(payload, op)?)?),
            Opcode::EMIT => now(&self.emit_custom(id, request(payload, op)?)?),
            Opcode::METRICS_SYSTEM => {
                let running = self.agents.iter().filter(|(_, a)| a.is_running()).count() as u32;
                now(&metrics::system(running))
            }
            Opcode::METRICS_AGENT => {
                let req: MetricsRequest = request(payload, op)?;
                let target = self.observed(id, req.agent_id)?;
                now(&self.agent_metrics(target)?)
            }
            Opcode::METRICS_ALL_AGENTS => {
                let visible: Vec<AgentId> =
                    self.agents.ids().into_iter().filter(|&a| self.observed(id, Some(a.0)).is_ok()).collect();
                let agents = visible.into_iter().filter_map(|a| self.agent_metrics(a).ok()).collect();
                now(&AllAgentMetrics { agents })
            }
            Opcode::METRICS_CGROUP => {
                let req: MetricsRequest = request(payload, op)?;
                let target = self.observed(id, req.agent_id)?;
                let agent = self.caller(target)?;
                let cgroup = agent.cgroup.as_ref().ok_or_else(|| {
                    RuntimeError::Conflict(format!(
                        "agent {target} has no cgroup: it was started without limits or sandbox"
                    ))
                })?;
                now(&cgroup_metrics(cgroup.stats()?))
            }
            other => Err(RuntimeError::Unsupported(other)),
        }
    }

    fn hello(&mut self, id: AgentId, hello: Hello) -> Result<Answer> {
        let token = self.listener.as_ref().and_then(|l| l.config.token.clone());
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let conn_admitted = agent.conn.as_ref().is_some_and(|c| c.admitted);
        if !conn_admitted {
            let presented = hello.token.as_deref().unwrap_or_default();
            let valid = token.as_deref().is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()));
            if !valid {
                return Err(RuntimeError::NotAdmitted("wrong or missing token"));
            }
            if let Some(conn) = agent.conn.as_mut() {
                conn.admitted = true;
            }
            self.record(
                id,
                "lifecycle",
                "CONNECTED",
                true,
                serde_json::json!({ "client": hello.client, "by": "token" }),
            );
        }
        let agent = self.caller(id)?;
        now(&HelloReply {
            protocol_version: PROTOCOL_VERSION,
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            agent_id: id.0,
            name: agent.name.clone(),
            level: agent.policy.level.or(agent.policy.ceiling_level).unwrap_or(Level::Minimal),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
        })
    }

    fn exec(&mut self, id: AgentId, request_id: u32, req: ExecRequest) -> Result<Answer> {
        let agent = self.caller(id)?;
        let plan = agent.policy.plan_exec(&req.argv, req.command.as_deref())?;
        if req.run_async {
            self.check_async_room(id)?;
        }
        let max_ms = agent.policy.current.max_exec_time_ms.min(agent.policy.ceiling.max_exec_time_ms);
        let timeout_ms = req.timeout_ms.map_or(max_ms, |t| u64::from(t).min(max_ms));
        let cwd = match &req.cwd {
            Some(dir) => agent.cwd.join(dir),
            None => agent.cwd.clone(),
        };
        let env: Vec<(String, String)> = req.env.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        // A sandboxed agent's EXEC runs inside its sandbox, never on the host on its behalf.
        let inside = match (&agent.confinement, &agent.process) {
            (Some(confinement), Some(process)) => Some((&process.pidfd, confinement)),
            (Some(_), None) => return Err(RuntimeError::Conflict(format!("agent {id} has no running sandbox"))),
            (None, _) => None,
        };
        let caller = ExecCaller { agent: id, request_id, run_async: req.run_async };
        let job = ExecJob::start(
            caller,
            ExecSpec {
                argv: &plan.argv,
                display: plan.display.clone(),
                cwd: &cwd,
                home: &self.config.home,
                env: &env,
                stdin: &req.stdin,
                timeout: Duration::from_millis(timeout_ms),
                max_output: req.max_output.map_or(DEFAULT_MAX_OUTPUT, |m| m as usize),
                cgroup: agent.cgroup.as_ref(),
                cwd_inside: req.cwd.clone(),
                inside,
            },
        )?;
        self.add_exec(job)?;
        self.record(id, "syscall", "EXEC", true, serde_json::json!({ "command": plan.display }));
        if req.run_async {
            now(&Accepted { request_id })
        } else {
            Ok(Answer::Later)
        }
    }

    /// Refuses one more async request when [`MAX_ASYNC_PENDING`] results are pending or running.
    pub(super) fn check_async_room(&self, id: AgentId) -> Result<()> {
        let agent = self.caller(id)?;
        let running = self.execs.iter().filter(|(_, j)| j.caller.agent == id && j.caller.run_async).count();
        if running + self.net.pending_async(id) + agent.async_results.len() >= MAX_ASYNC_PENDING {
            return Err(RuntimeError::LimitExceeded(format!(
                "{MAX_ASYNC_PENDING} async results are pending: collect them with ASYNC_POLL"
            )));
        }
        Ok(())
    }

    /// Delivers a finished exec's result: as a reply, or into the caller's async queue.
    pub(super) fn exec_done(&mut self, caller: ExecCaller, result: Result<ExecReply>) {
        let encoded = result.as_ref().map(encode).map_err(RuntimeError::to_reply);
        self.note_result(caller.agent, caller.request_id, encoded.as_deref().map_err(Clone::clone));
        if caller.run_async {
            let (error, payload) = match result {
                Ok(reply) => (None, encode(&reply)),
                Err(e) => (Some(e.to_reply()), Vec::new()),
            };
            if let Some(agent) = self.agents.get_mut(caller.agent) {
                agent.async_results.push_back(AsyncResult {
                    request_id: caller.request_id,
                    opcode: Opcode::EXEC as u8,
                    error,
                    payload,
                });
            }
            return;
        }
        let mut out = Vec::new();
        match result {
            Ok(reply) => write_reply(&mut out, Opcode::EXEC as u8, caller.request_id, &reply),
            Err(e) => write_error(&mut out, Opcode::EXEC as u8, caller.request_id, &e.to_reply()),
        }
        self.send_bytes(caller.agent, &out);
    }

    fn spawn_child(&mut self, id: AgentId, req: SpawnRequest) -> Result<Answer> {
        let parent = self.caller(id)?;
        parent.policy.check_spawn()?;
        let argv = match (&req.script, req.argv.is_empty()) {
            (Some(script), true) => vec![req.interpreter.clone().unwrap_or_else(|| "python3".into()), script.clone()],
            (None, false) => req.argv.clone(),
            _ => return Err(RuntimeError::InvalidArgument("spawn takes either a script or argv".into())),
        };
        parent.policy.check_program(&argv)?;
        // A sandboxed parent names files as its sandbox shows them; its child is started from the
        // host files behind them, and only those the parent can see.
        let argv = match &parent.confinement {
            Some(c) => argv
                .into_iter()
                .map(|arg| match arg.starts_with('/').then(|| c.view.to_host(&arg)).flatten() {
                    Some(host) => host.display().to_string(),
                    None => arg,
                })
                .collect(),
            None => argv,
        };
        let default_level = if parent.policy.current.within(&Level::Standard.permissions(&self.config.home)).is_ok() {
            parent.policy.level
        } else {
            Some(Level::Standard)
        };
        let level = req.level.or(default_level).unwrap_or(Level::Minimal);
        let child_policy: AgentPolicy = parent.policy.grant(Some(level), level.permissions(&self.config.home))?;
        let cwd = req.cwd.as_ref().map(|c| parent.cwd.join(c)).unwrap_or_else(|| parent.cwd.clone());
        let spec = SpawnSpec {
            name: req.name.clone(),
            argv,
            env: inherited_env(parent.spec.as_deref(), req.env),
            cwd: Some(cwd),
            level,
            permissions: None,
            stdio: AgentStdio::Inherit,
            restart: req.restart,
            // A child is confined at least as much as its parent: a sandboxed agent cannot start
            // an unsandboxed one, nor give it network or limits it lacks itself.
            sandboxed: req.sandboxed || parent.spec.as_ref().is_some_and(|p| p.sandboxed),
            network: req.network && parent.spec.as_ref().is_none_or(|p| !p.sandboxed || p.network),
            limits: match parent.spec.as_ref() {
                Some(p) => tighter(&req.limits, &p.limits),
                None => req.limits,
            },
            mounts: Vec::new(),
            vm: req.vm,
        };
        let child = self.spawn_agent(Box::new(spec), Some(id), child_policy)?;
        let pid = self.agents.get(child).map_or(0, |a| a.pid);
        now(&SpawnReply { id: child.0, name: req.name, pid, state: AgentState::Running })
    }

    /// The agent a KILL, PAUSE or RESUME names, if the caller may control it: its own descendants,
    /// and only with the spawn right.
    fn control_target(&self, caller: AgentId, target: &Target) -> Result<AgentId> {
        let id = match target {
            Target::Id(raw) => AgentId(*raw),
            Target::Name(name) => self.agents.find_by_name(name).ok_or_else(|| RuntimeError::NotFound(name.clone()))?,
        };
        if self.agents.get(id).is_none() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        self.caller(caller)?.policy.check_spawn()?;
        if !self.agents.is_descendant(id, caller) {
            return Err(Denial::NotDescendant(id.0).into());
        }
        Ok(id)
    }

    /// The agent whose records `caller` asks to see (itself when `target` is `None`): itself or a
    /// descendant, or any agent when the caller's level and ceiling are both unrestricted.
    fn observed(&self, caller: AgentId, target: Option<u64>) -> Result<AgentId> {
        self.caller(caller)?;
        let target = target.map_or(caller, AgentId);
        self.caller(target)?;
        if self.sees(caller, target) {
            Ok(target)
        } else {
            Err(Denial::NotDescendant(target.0).into())
        }
    }

    /// Whether `viewer` may observe `target`: itself, its descendants, or anyone when the viewer's
    /// level and ceiling are both unrestricted.
    pub(super) fn sees(&self, viewer: AgentId, target: AgentId) -> bool {
        let Some(agent) = self.agents.get(viewer) else { return false };
        agent.policy.is_unrestricted() || target == viewer || self.agents.is_descendant(target, viewer)
    }

    pub(super) fn agent_metrics(&self, id: AgentId) -> Result<AgentMetrics> {
        let agent = self.caller(id)?;
        let info = agent.info(id, std::time::Instant::now());
        let running = agent.process.as_ref().map_or(0, |p| p.pid);
        let proc = metrics::process(running);
        Ok(AgentMetrics {
            agent_id: id.0,
            name: info.name,
            state: info.state,
            pid: info.pid,
            uptime_ms: info.uptime_ms,
            cpu_time_us: proc.cpu_time_us,
            rss_bytes: proc.rss_bytes,
            threads: proc.threads,
            fds: proc.fds,
            syscalls: metrics::syscall_counts(&agent.syscalls),
            cgroup: agent.cgroup.as_ref().and_then(|c| c.stats().ok()).map(cgroup_metrics),
        })
    }

    fn perms_reply(&self, id: AgentId) -> Result<PermsReply> {
        let agent = self.caller(id)?;
        // The seed also shows what the LLM quota has used.
        let mut permissions = serde_json::to_value(&agent.policy.current).unwrap_or_default();
        permissions["llm"]["tokens_used"] = agent.llm_usage.tokens.into();
        permissions["llm"]["calls_made"] = agent.llm_usage.calls.into();
        Ok(PermsReply {
            agent_id: id.0,
            level: agent.policy.level,
            ceiling: agent.policy.ceiling_level,
            permissions_json: permissions.to_string(),
        })
    }

    fn set_perms(&mut self, id: AgentId, req: SetPermsRequest) -> Result<Answer> {
        let target = req.agent_id.map_or(id, AgentId);
        let target_agent = self.caller(target)?;
        let base = match req.level {
            Some(level) => level.permissions(&self.config.home),
            None => target_agent.policy.current.clone(),
        };
        let (level, permissions) = match &req.permissions_json {
            Some(json) => (None, base.patched(json)?),
            None if req.level.is_some() => (req.level, base),
            None => return Err(RuntimeError::InvalidArgument("set_permissions needs a level or permissions".into())),
        };
        if target == id {
            let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
            agent.policy.set_own(level, permissions)?;
        } else {
            if !self.agents.is_descendant(target, id) {
                return Err(Denial::NotDescendant(target.0).into());
            }
            let granted = self.caller(id)?.policy.grant(level, permissions)?;
            if let Some(agent) = self.agents.get_mut(target) {
                agent.policy = granted;
            }
        }
        let name = self.caller(target)?.policy.level_name();
        self.record(target, "lifecycle", "SET_PERMS", true, serde_json::json!({ "by": id.0, "level": name }));
        now(&self.perms_reply(target)?)
    }

    /// SET_AUDIT_CONFIG: what the log records is the runtime's, so only an agent whose level and
    /// ceiling are both unrestricted may change it.
    fn set_audit_config(&mut self, id: AgentId, req: SetAuditConfigRequest) -> Result<AuditConfigReply> {
        let agent = self.caller(id)?;
        if !agent.policy.is_unrestricted() {
            return Err(Denial::Capability("changing the audit configuration").into());
        }
        let config = &mut self.config.audit_config;
        let fields = [
            (req.log_syscalls, &mut config.log_syscalls),
            (req.log_security, &mut config.log_security),
            (req.log_lifecycle, &mut config.log_lifecycle),
            (req.log_ipc, &mut config.log_ipc),
            (req.log_state, &mut config.log_state),
            (req.log_resource, &mut config.log_resource),
            (req.log_network, &mut config.log_network),
            (req.log_world, &mut config.log_world),
        ];
        for (asked, field) in fields {
            if let Some(on) = asked {
                *field = on;
            }
        }
        if let Some(max) = req.max_entries {
            self.audit.set_capacity(max as usize);
        }
        let reply = AuditConfigReply { config: self.config.audit_config, max_entries: self.audit.capacity() as u32 };
        // Changing what is audited is itself always audited.
        let details = serde_json::to_value(reply.config).unwrap_or_default();
        self.append_audit(id, "security", "SET_AUDIT_CONFIG", true, details);
        Ok(reply)
    }

    /// GET_AUDIT_LOG: an unrestricted agent sees everything; others see themselves and their
    /// descendants.
    fn audit_log(&self, id: AgentId, query: AuditQuery) -> Result<Answer> {
        let mut query = query;
        if !self.caller(id)?.policy.is_unrestricted() {
            match query.agent_id {
                Some(target) if target == id.0 || self.agents.is_descendant(AgentId(target), id) => {}
                Some(target) => return Err(Denial::NotDescendant(target).into()),
                None => query.agent_id = Some(id.0),
            }
        }
        now(&AuditLogReply { entries: self.audit.query(&query) })
    }
}

/// Each limit the tighter of the two; a limit either one sets applies.
fn tighter(asked: &Limits, parent: &Limits) -> Limits {
    let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // A CPU share is quota per period; compare them as such and keep the smaller.
    let share = |l: &Limits| l.cpu_quota.map(|q| (q, l.cpu_period.unwrap_or(100_000)));
    let cpu = match (share(asked), share(parent)) {
        (Some((qa, pa)), Some((qb, pb))) => {
            Some(if u128::from(qa) * u128::from(pb) <= u128::from(qb) * u128::from(pa) { (qa, pa) } else { (qb, pb) })
        }
        (a, b) => a.or(b),
    };
    Limits {
        memory: min(asked.memory, parent.memory),
        max_pids: min(asked.max_pids.map(u64::from), parent.max_pids.map(u64::from)).map(|p| p as u32),
        cpu_quota: cpu.map(|(q, _)| q),
        cpu_period: cpu.map(|(_, p)| p),
        cpu_shares: min(asked.cpu_shares, parent.cpu_shares),
    }
}

/// A child agent gets the variables its parent was started with, then its own on top.
fn inherited_env(parent: Option<&SpawnSpec>, own: Vec<KeyValue>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = parent.map(|p| p.env.clone()).unwrap_or_default();
    for kv in own {
        env.retain(|(k, _)| *k != kv.key);
        env.push((kv.key, kv.value));
    }
    env
}

/// Cgroup counters as the protocol carries them; a counter this machine lacks reads as 0.
fn cgroup_metrics(s: super::cgroup::CgroupStats) -> CgroupMetrics {
    CgroupMetrics {
        cpu_usage_us: s.cpu_usage_us.unwrap_or(0),
        cpu_throttled_us: s.cpu_throttled_us.unwrap_or(0),
        nr_throttled: s.nr_throttled.unwrap_or(0),
        memory_current: s.memory_current.unwrap_or(0),
        memory_peak: s.memory_peak.unwrap_or(0),
        pids_current: s.pids_current.unwrap_or(0),
        oom_kills: s.oom_kills.unwrap_or(0),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
