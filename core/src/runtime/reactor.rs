//! The reactor thread: one mio poll loop that owns every socket, pidfd, pipe, timer and agent
//! record. Host threads reach it through the command channel and the waker; agents through their
//! connections. Nothing here blocks except `poll` itself.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::{Events, Interest, Poll, Token, Waker};

use super::agents::{Agent, AgentTable, Origin};
use super::cgroup::CgroupRoot;
use super::conn::{Conn, Fill};
use super::events::{Event, EventHub, EventKind};
use super::exec::ExecJob;
use super::ids::SlotMap;
use super::listener::Listener;
use super::{AgentId, Command, ListenConfig, Result, RuntimeConfig, RuntimeError};
use crate::audit::{AuditEntry, AuditLog};
use crate::policy::AgentPolicy;
use crate::protocol::{AgentState, Decoded, FrameDecoder, FrameError};

/// What a poll token stands for. Slots index the agent table or the exec jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Waker,
    Listener,
    Conn(usize),
    AgentExit(usize),
    ExecExit(usize),
    ExecOut(usize),
    ExecErr(usize),
}

const KIND_BITS: usize = 3;

pub(super) fn token(source: Source) -> Token {
    let (kind, slot) = match source {
        Source::Waker => (0, 0),
        Source::Listener => (1, 0),
        Source::Conn(s) => (2, s),
        Source::AgentExit(s) => (3, s),
        Source::ExecExit(s) => (4, s),
        Source::ExecOut(s) => (5, s),
        Source::ExecErr(s) => (6, s),
    };
    Token((slot << KIND_BITS) | kind)
}

fn source(token: Token) -> Option<Source> {
    let slot = token.0 >> KIND_BITS;
    Some(match token.0 & ((1 << KIND_BITS) - 1) {
        0 => Source::Waker,
        1 => Source::Listener,
        2 => Source::Conn(slot),
        3 => Source::AgentExit(slot),
        4 => Source::ExecExit(slot),
        5 => Source::ExecOut(slot),
        6 => Source::ExecErr(slot),
        _ => return None,
    })
}

pub(super) fn slot_of(id: AgentId) -> usize {
    SlotMap::<()>::slot(id.0)
}

/// Numbers the runtimes started in this process.
static NEXT_INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Milliseconds since the Unix epoch, for audit entries and events.
pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn open_audit_file(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| RuntimeError::io(format!("opening audit log {}", path.display()), e))
}

/// Removes the cgroups of runtimes whose process is gone (`agent-<pid>-...`, see `give_cgroup`):
/// a runtime killed with SIGKILL cannot clean up after itself.
fn remove_leftovers(root: &CgroupRoot) {
    let dead = |name: &str| {
        let pid =
            name.strip_prefix("agent-").and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    for name in root.agent_names().into_iter().filter(|n| dead(n)) {
        // Creating it again adopts an empty leftover; what the dead runtime's agents left running
        // is killed before the removal.
        if let Ok(mut cgroup) = root.create(&name, &Default::default()) {
            let _ = cgroup.kill_all();
            let _ = cgroup.remove();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    ExecDeadline(u64),
    Restart(AgentId),
    /// The end of a RECV's wait for a first message.
    RecvWait(AgentId),
    /// A THINK rate window reopens.
    ThinkWakeup,
    StateExpiry,
}

pub(super) struct Reactor {
    pub poll: Poll,
    pub waker: Arc<Waker>,
    inbox: Receiver<Command>,
    pub config: RuntimeConfig,
    pub events: Arc<EventHub>,
    pub agents: AgentTable,
    /// Names agents registered for IPC.
    pub names: super::ipc::Names,
    /// The bus event types the host subscribed to.
    pub host_interest: super::bus::Interest,
    /// The recording running or last stopped (RECORD_*).
    pub recording: Option<super::record::Recording>,
    pub execs: SlotMap<ExecJob>,
    pub listener: Option<Listener>,
    pub(super) timers: BTreeSet<(Instant, Timer)>,
    pub audit: AuditLog,
    /// Which runtime of this process this is, for names that must be unique on the machine.
    pub instance: u32,
    /// Holds sandboxed agents' work directories; removed at shutdown.
    pub state_dir: PathBuf,
    /// Warm sandboxes, by shape.
    pub pools: Vec<super::pool::Pool>,
    /// Warm sandboxes made so far, for their names.
    pub warm_count: u64,
    /// Pools to refill, asked for at the end of the reactor's turn.
    pub fills_due: Vec<usize>,
    /// Network namespaces made ahead for sandboxes, started with the first sandbox that needs one.
    pub netns: std::cell::OnceCell<Option<super::netns::NetnsPool>>,
    /// The thread that makes warm sandboxes, started with the first pool.
    pub filler: Option<std::sync::mpsc::Sender<super::pool::FillRequest>>,
    /// Where the filling thread reports back: the reactor's own inbox.
    pub outbox: std::sync::mpsc::Sender<Command>,
    /// The state store (STORE, FETCH, DELETE, KEYS).
    pub state: super::store::StateStore,
    /// HTTP and THINK: their workers and the requests in flight.
    pub(super) net: super::net::NetService,
    /// Detected on first use: hosts that never ask for limits never read the cgroup mounts.
    cgroups: Option<CgroupRoot>,
    audit_file: Option<std::fs::File>,
    /// Reused for the replies of one read burst.
    scratch: Vec<u8>,
    /// Every connection reads into this one buffer.
    read_buf: Vec<u8>,
    running: bool,
}

impl Reactor {
    pub fn new(
        config: RuntimeConfig,
        inbox: Receiver<Command>,
        outbox: std::sync::mpsc::Sender<Command>,
        events: Arc<EventHub>,
    ) -> Result<Reactor> {
        let poll = Poll::new().map_err(|e| RuntimeError::io("creating the poll instance", e))?;
        let instance = NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let waker =
            Waker::new(poll.registry(), token(Source::Waker)).map_err(|e| RuntimeError::io("creating the waker", e))?;
        let waker = Arc::new(waker);
        let mut audit = AuditLog::new(config.audit_capacity);
        let state = super::store::StateStore::open(&config, outbox.clone(), Arc::clone(&waker), &mut audit)?;
        let net = super::net::NetService::new(config.net.clone(), outbox.clone(), Arc::clone(&waker));
        Ok(Reactor {
            net,
            poll,
            waker,
            state,
            inbox,
            audit,
            audit_file: match &config.audit_file {
                Some(path) => Some(open_audit_file(path)?),
                None => None,
            },
            config,
            events,
            agents: AgentTable::default(),
            names: Default::default(),
            recording: None,
            host_interest: Default::default(),
            execs: SlotMap::default(),
            listener: None,
            timers: BTreeSet::new(),
            scratch: Vec::new(),
            cgroups: None,
            instance,
            pools: Vec::new(),
            netns: std::cell::OnceCell::new(),
            filler: None,
            fills_due: Vec::new(),
            outbox,
            warm_count: 0,
            state_dir: std::env::temp_dir().join(format!("clove-{}-{instance}", std::process::id())),
            read_buf: vec![0; super::conn::READ_CHUNK],
            running: true,
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        // Spinning only helps when a requester can run on another CPU meanwhile.
        let spare_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let spin = if spare_cpu { self.config.busy_poll } else { std::time::Duration::ZERO };
        let mut last_busy = Instant::now();
        while self.running {
            let now = Instant::now();
            let timeout = if now.duration_since(last_busy) < spin {
                // Recently busy: look again without sleeping, so the next request of a chatty agent
                // does not wait for this thread to be woken on another CPU.
                Some(std::time::Duration::ZERO)
            } else {
                self.timers.first().map(|(at, _)| at.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // A poll that fails for good cannot serve anyone: stop and clean up.
                break;
            }
            if !events.is_empty() {
                last_busy = Instant::now();
            }
            for event in events.iter() {
                if let Some(source) = source(event.token()) {
                    self.dispatch(source);
                }
            }
            self.fire_timers();
            self.request_due_fills();
        }
        self.shutdown_all();
    }

    fn dispatch(&mut self, source: Source) {
        match source {
            Source::Waker => self.drain_commands(),
            Source::Listener => self.accept_all(),
            Source::Conn(slot) => {
                if let Some(id) = self.agents.id_at_slot(slot) {
                    self.service(id);
                }
            }
            Source::AgentExit(slot) => {
                if let Some(id) = self.agents.id_at_slot(slot) {
                    self.check_agent_exit(id);
                }
            }
            Source::ExecExit(slot) => {
                if let Some(key) = self.execs.key_at_slot(slot) {
                    self.check_exec_exit(key);
                }
            }
            Source::ExecOut(slot) | Source::ExecErr(slot) => {
                let registry = self.poll.registry();
                if let Some(job) = self.execs.key_at_slot(slot).and_then(|k| self.execs.get_mut(k)) {
                    job.on_output(registry, matches!(source, Source::ExecErr(_)));
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        loop {
            match self.inbox.try_recv() {
                Ok(command) => self.command(command),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.running = false;
                    return;
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        // A host thread that stopped waiting has dropped its receiver; that is not an error here.
        match command {
            Command::Spawn(spec, reply) => {
                let policy = match &spec.permissions {
                    Some(p) => AgentPolicy { level: None, current: p.clone(), ceiling_level: None, ceiling: p.clone() },
                    None => AgentPolicy::at_level(spec.level, &self.config.home),
                };
                let _ = reply.send(self.spawn_agent(spec, None, policy));
            }
            Command::Kill(id, reply) => {
                let _ = reply.send(self.kill_agent(id));
            }
            Command::Pause(id, reply) => {
                let _ = reply.send(self.set_paused(id, true));
            }
            Command::Resume(id, reply) => {
                let _ = reply.send(self.set_paused(id, false));
            }
            Command::Wait(id, done, reply) => {
                let restart_pending = self.restart_pending(id);
                let answer = match self.agents.get_mut(id) {
                    None => Err(RuntimeError::NotFound(id.to_string())),
                    // An ended agent waiting for its restart is not done yet.
                    Some(agent) if agent.state == AgentState::Exited && !restart_pending => Ok(agent.exit),
                    Some(agent) => {
                        agent.waiters.push(done);
                        Ok(None)
                    }
                };
                let _ = reply.send(answer);
            }
            Command::List(reply) => {
                let _ = reply.send(Ok(self.list()));
            }
            Command::Listen(config, reply) => {
                let _ = reply.send(self.listen(config));
            }
            Command::Audit(query, reply) => {
                let _ = reply.send(Ok(self.audit.query(&query)));
            }
            Command::Prewarm(template, count, reply) => {
                let _ = reply.send(self.prewarm(template, count));
            }
            Command::Subscribe(types, on, reply) => {
                let _ = reply.send(self.host_interest.update(types, on, false));
            }
            Command::Filled(pool, made) => self.filled(pool, *made),
            Command::StateCommitted(report) => self.state_committed(report),
            Command::NetDone(key, outcome) => self.net_done(key, *outcome),
            Command::Metrics(id, reply) => {
                let _ = reply.send(self.agent_metrics(id));
            }
            Command::Shutdown => self.running = false,
        }
    }

    pub fn list(&self) -> Vec<crate::protocol::AgentInfo> {
        let now = Instant::now();
        self.agents
            .iter()
            .filter(|(_, a)| a.conn.as_ref().is_none_or(|c| c.admitted))
            .map(|(id, a)| a.info(id, now))
            .collect()
    }

    fn listen(&mut self, config: ListenConfig) -> Result<()> {
        if self.listener.is_some() {
            return Err(RuntimeError::Conflict("the runtime already listens on a socket".into()));
        }
        let mut listener = Listener::bind(config)?;
        self.poll
            .registry()
            .register(&mut listener.socket, token(Source::Listener), Interest::READABLE)
            .map_err(|e| RuntimeError::io("registering the listening socket", e))?;
        self.listener = Some(listener);
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let stream = match listener.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                // A failed accept (the peer already gone, fd exhaustion) loses only that peer.
                Err(_) => return,
            };
            let Ok(peer) = clove_sys::peer_credentials(&stream) else {
                continue;
            };
            let admitted = listener.admits_uid(peer.uid);
            let policy = AgentPolicy::at_level(listener.config.max_level, &self.config.home);
            let conn = Conn::new(stream, self.config.max_payload, admitted);
            let id = self.agents.insert_with(|id| {
                Agent::new(
                    format!("agent-{}", id.0 & 0xFFFF_FFFF),
                    Origin::Connected,
                    peer.pid,
                    policy,
                    None,
                    PathBuf::from("/"),
                )
            });
            if let Some(agent) = self.agents.get_mut(id) {
                agent.conn = Some(conn);
            }
            if self.register_conn(id).is_err() {
                self.agents.remove(id);
                continue;
            }
            if admitted {
                self.record(
                    id,
                    "lifecycle",
                    "CONNECTED",
                    true,
                    serde_json::json!({ "pid": peer.pid, "uid": peer.uid }),
                );
            }
        }
    }

    pub(super) fn register_conn(&mut self, id: AgentId) -> std::io::Result<()> {
        let registry = self.poll.registry();
        match self.agents.get_mut(id).and_then(|a| a.conn.as_mut()) {
            Some(conn) => registry.register(
                &mut conn.stream,
                token(Source::Conn(slot_of(id))),
                Interest::READABLE | Interest::WRITABLE,
            ),
            None => Ok(()),
        }
    }

    /// Reads and answers every whole request the connection has, then flushes the replies.
    fn service(&mut self, id: AgentId) {
        let mut out = std::mem::take(&mut self.scratch);
        if let Some(conn) = self.conn_mut(id) {
            conn.may_read = true;
        }
        loop {
            self.serve_buffered(id, &mut out);
            if out.len() >= 64 << 10 {
                self.send_bytes(id, &out);
                out.clear();
            }
            let Some(conn) = self.agents.get_mut(id).and_then(|a| a.conn.as_mut()) else { break };
            match conn.fill(&mut self.read_buf) {
                Fill::Data => {}
                Fill::Idle => break,
                Fill::Eof => {
                    out.clear();
                    self.scratch = out;
                    self.close_conn(id);
                    return;
                }
            }
        }
        self.send_bytes(id, &out);
        out.clear();
        self.scratch = out;
    }

    /// Answers the whole frames the connection's decoder holds. The decoder is taken out meanwhile so
    /// each payload is served from its buffer, and put back after (unless the connection closed).
    fn serve_buffered(&mut self, id: AgentId, out: &mut Vec<u8>) {
        let Some(conn) = self.conn_mut(id) else { return };
        if conn.closing {
            return;
        }
        let mut decoder = std::mem::replace(&mut conn.decoder, FrameDecoder::new(0));
        loop {
            match decoder.decode() {
                Ok(Decoded::Frame(header, payload)) => self.handle_frame(id, header, payload, out),
                Ok(Decoded::NeedMore(_)) => break,
                Err(error) => {
                    self.broken_frame(id, &error, out);
                    break;
                }
            }
            if self.conn_mut(id).is_none_or(|c| c.closing) {
                break;
            }
        }
        if let Some(conn) = self.conn_mut(id) {
            conn.decoder = decoder;
        }
    }

    fn conn_mut(&mut self, id: AgentId) -> Option<&mut Conn> {
        self.agents.get_mut(id).and_then(|a| a.conn.as_mut())
    }

    /// A frame that breaks framing: answer one error frame, then close only this connection.
    fn broken_frame(&mut self, id: AgentId, error: &FrameError, out: &mut Vec<u8>) {
        let reply = crate::protocol::ErrorReply {
            code: crate::protocol::ErrorCode::BadFrame as u16,
            message: error.to_string(),
        };
        crate::protocol::write_error(out, 0, 0, &reply);
        if let Some(conn) = self.agents.get_mut(id).and_then(|a| a.conn.as_mut()) {
            conn.closing = true;
        }
        self.record(id, "security", "BAD_FRAME", false, serde_json::json!({ "error": error.to_string() }));
    }

    /// Queues bytes on an agent's connection and writes what the socket takes.
    pub fn send_bytes(&mut self, id: AgentId, bytes: &[u8]) {
        let Some(conn) = self.agents.get_mut(id).and_then(|a| a.conn.as_mut()) else {
            return;
        };
        conn.queue(bytes);
        match conn.flush() {
            Err(_) => self.close_conn(id),
            Ok(true) if conn.closing => self.close_conn(id),
            Ok(_) => {}
        }
    }

    /// Closes an agent's connection. An agent that connected from outside ends with it.
    pub fn close_conn(&mut self, id: AgentId) {
        let registry = self.poll.registry();
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if let Some(mut conn) = agent.conn.take() {
            let _ = registry.deregister(&mut conn.stream);
        }
        agent.subscription = Default::default();
        let (origin, admitted_name) = (agent.origin, agent.name.clone());
        self.forget_ipc(id);
        self.abandon_net_of(id);
        if origin == Origin::Connected {
            self.abandon_execs_of(id);
            self.record(id, "lifecycle", "DISCONNECTED", true, serde_json::json!({ "name": admitted_name }));
            self.forget_agent(id);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            match timer {
                Timer::ExecDeadline(key) => {
                    if let Some(job) = self.execs.get_mut(key) {
                        job.time_out();
                    }
                }
                Timer::Restart(id) => self.restart(id),
                Timer::RecvWait(id) => self.recv_wait_over(id),
                Timer::ThinkWakeup => self.think_wakeup(),
                Timer::StateExpiry => self.state_timer_fired(),
            }
        }
    }

    fn check_exec_exit(&mut self, key: u64) {
        let Some(job) = self.execs.get_mut(key) else {
            return;
        };
        if !job.poll_exit() {
            return;
        }
        let Some(job) = self.execs.remove(key) else {
            return;
        };
        self.timers.retain(|(_, t)| *t != Timer::ExecDeadline(key));
        let caller = job.caller;
        let result = job.finish(self.poll.registry());
        self.exec_done(caller, result);
    }

    /// Registers a started exec job and arms its deadline.
    pub fn add_exec(&mut self, job: ExecJob) -> Result<()> {
        let deadline = job.deadline;
        let key = self.execs.insert_with(|_| job);
        let slot = SlotMap::<()>::slot(key);
        let registry = self.poll.registry();
        let registered = match self.execs.get_mut(key) {
            Some(job) => job.register(
                registry,
                token(Source::ExecExit(slot)),
                token(Source::ExecOut(slot)),
                token(Source::ExecErr(slot)),
            ),
            None => Ok(()),
        };
        if let Err(e) = registered {
            if let Some(job) = self.execs.remove(key) {
                job.process.kill_and_reap();
            }
            return Err(RuntimeError::io("registering the exec job", e));
        }
        self.timers.insert((deadline, Timer::ExecDeadline(key)));
        Ok(())
    }

    /// Whether an ended agent is waiting to be started again.
    pub fn restart_pending(&self, id: AgentId) -> bool {
        self.timers.iter().any(|(_, t)| *t == Timer::Restart(id))
    }

    /// This machine's cgroups, detected once; the leftovers of runtimes that died are removed then.
    pub fn cgroup_root(&mut self) -> Result<&CgroupRoot> {
        if self.cgroups.is_none() {
            let root = match &self.config.cgroups {
                Some(root) => root.clone(),
                None => CgroupRoot::detect()?,
            };
            remove_leftovers(&root);
            self.cgroups = Some(root);
        }
        self.cgroups.as_ref().ok_or_else(|| RuntimeError::Conflict("cgroups not detected".into()))
    }

    /// Tells the host and the agents that see `id` what happened to it.
    pub fn publish(&mut self, id: AgentId, kind: EventKind) {
        self.emit_lifecycle(id, &kind);
        let agent_name = self.agents.get(id).map(|a| a.name.clone()).unwrap_or_default();
        self.events.publish(Event { agent_id: id, agent_name, kind, timestamp_ms: now_ms() });
    }

    /// Appends an audit entry about agent `id`, if the audit configuration logs its category.
    pub fn record(&mut self, id: AgentId, category: &str, event: &str, success: bool, details: serde_json::Value) {
        if self.config.audit_config.logs(category) {
            self.append_audit(id, category, event, success, details);
        }
    }

    /// Appends an audit entry whatever the configuration says.
    pub fn append_audit(
        &mut self,
        id: AgentId,
        category: &str,
        event: &str,
        success: bool,
        details: serde_json::Value,
    ) {
        let agent_name = self.agents.get(id).map(|a| a.name.clone()).unwrap_or_default();
        let capacity = self.audit.capacity();
        let entry = self.audit.record(AuditEntry {
            id: 0,
            timestamp_ms: now_ms(),
            category: category.into(),
            event: event.into(),
            agent_id: id.0,
            agent_name,
            success,
            details_json: details.to_string(),
        });
        self.state.persist_audit(entry, capacity);
        let Some(file) = self.audit_file.as_mut() else { return };
        let line = serde_json::to_string(entry).unwrap_or_default();
        if let Err(e) = writeln!(file, "{line}") {
            // Stop writing a file that fails, and say so in the log that still works.
            self.audit_file = None;
            let details = serde_json::json!({ "error": e.to_string() });
            self.append_audit(id, "security", "AUDIT_FILE_FAILED", false, details);
        }
    }

    /// Kills every agent and exec job and waits for them, so nothing outlives the runtime.
    fn shutdown_all(&mut self) {
        // Host threads (a think handler among them) now get "stopped" instead of waiting for a
        // reactor that waits for them.
        self.inbox = std::sync::mpsc::channel().1;
        self.net.shutdown();
        for key in self.execs.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            if let Some(job) = self.execs.remove(key) {
                job.process.kill_and_reap();
            }
        }
        for id in self.agents.ids() {
            let Some(mut agent) = self.agents.remove(id) else { continue };
            if let Some(process) = agent.process.take() {
                process.kill_and_reap();
            }
            if let Some(mut cgroup) = agent.cgroup.take() {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
            }
        }
        self.drain_pools();
        self.state.close();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        if let Some(listener) = self.listener.take() {
            listener.remove_socket_file();
        }
    }
}
