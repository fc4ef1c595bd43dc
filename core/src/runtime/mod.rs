//! The embedded runtime: one reactor thread that owns every socket, child process and agent record,
//! and a [`Runtime`] handle that host threads use to command it.
//!
//! Call order: [`Runtime::start`] → optionally [`Runtime::listen`] → [`Runtime::spawn`] agents →
//! [`Runtime::wait`] / [`Runtime::next_event`] → drop (or [`Runtime::shutdown`]), which kills every
//! agent and joins the reactor thread. Every method may be called from any thread.

mod agents;
mod bus;
pub mod cgroup;
mod conn;
mod error;
mod events;
mod exec;
mod fs;
mod ids;
mod ipc;
mod lifecycle;
mod listener;
mod metrics;
mod net;
mod netns;
mod pool;
mod process;
mod reactor;
mod record;
mod sandbox;
mod spec;
mod store;
mod syscalls;
mod vm;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::{Result, RuntimeError};
pub use events::{Event, EventCallback, EventKind};
pub use ids::AgentId;
pub use net::{NetConfig, NetError, ProviderConfig, ProviderKind, ThinkAnswer, ThinkCall, ThinkHandler, ThinkOrder};
pub use spec::{AgentStdio, Mount, Profile, SpawnSpec};
pub use store::StoreError;
pub use vm::{VmImage, VmTierError};

use crate::audit::AuditEntry;
use crate::policy::Level;
use crate::protocol::{AgentInfo, AgentMetrics, AuditQuery, ExitInfo, DEFAULT_MAX_PAYLOAD};
use crate::state::StateLimits;
use events::EventHub;

/// Options of a runtime. Every field has a default; see [`RuntimeConfig::default`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The largest payload accepted in a frame (default 1 MiB).
    pub max_payload: u32,
    /// Expands `~` in path policies (default `$HOME`, else `/root`).
    pub home: String,
    /// Audit entries kept in memory (default 10 000).
    pub audit_capacity: usize,
    /// Events kept for [`Runtime::next_event`] before the oldest is dropped (default 1 024).
    pub event_capacity: usize,
    /// Ended agents kept for [`Runtime::wait`] and LIST before the oldest is forgotten (default 256).
    pub exited_retention: usize,
    /// Also append every audit entry to this file as a JSON line (created 0600; default none).
    pub audit_file: Option<PathBuf>,
    /// Which categories the audit log records; agents with unrestricted rights change it with
    /// SET_AUDIT_CONFIG.
    pub audit_config: crate::audit::AuditConfig,
    /// How long the reactor keeps polling without sleeping after it last had work (default 50 µs):
    /// a request that arrives meanwhile is served without a cross-CPU wake-up. Zero disables it, and
    /// so does a process allowed only one CPU.
    pub busy_poll: Duration,
    /// Keeps the state store's global keys in this database file (created 0600), so they outlive
    /// the runtime; each STORE and DELETE of one is answered once committed. Default: memory only.
    pub state_path: Option<PathBuf>,
    /// The state store's caps and per-agent quotas.
    pub state_limits: StateLimits,
    /// HTTP and THINK: workers, the address guard and the LLM provider.
    pub net: NetConfig,
    /// What microVM agents boot (default: `CLOVE_VM_KERNEL` and `CLOVE_VM_INITRAMFS`).
    pub vm: VmImage,
    /// Where agents' cgroups are made (default `None`: detected on first use with
    /// [`cgroup::CgroupRoot::detect`]). A runtime without root can be given the cgroup2 subtree
    /// delegated to it (`CgroupRoot::v2(dir)`).
    pub cgroups: Option<cgroup::CgroupRoot>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            home: std::env::var("HOME").unwrap_or_else(|_| "/root".to_string()),
            audit_capacity: 10_000,
            audit_config: Default::default(),
            event_capacity: 1_024,
            exited_retention: 256,
            audit_file: None,
            busy_poll: Duration::from_micros(50),
            state_path: None,
            state_limits: StateLimits::default(),
            net: NetConfig::default(),
            vm: VmImage::from_env(),
            cgroups: None,
        }
    }
}

/// A listening Unix socket for agents the runtime did not start.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub path: PathBuf,
    /// The ceiling and starting level of agents that connect (default `standard`).
    pub max_level: Level,
    /// Peers with these uids are admitted at once (default: this process's uid).
    pub allowed_uids: Vec<u32>,
    /// Other peers are admitted when their HELLO carries this token.
    pub token: Option<String>,
}

impl ListenConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ListenConfig {
            path: path.into(),
            max_level: Level::Standard,
            allowed_uids: vec![clove_sys::current_uid()],
            token: None,
        }
    }
}

type Reply<T> = SyncSender<Result<T>>;

/// What a host thread asks of the reactor.
enum Command {
    Spawn(Box<SpawnSpec>, Reply<AgentId>),
    Kill(AgentId, Reply<()>),
    Pause(AgentId, Reply<()>),
    Resume(AgentId, Reply<()>),
    /// Answers at once: the exit if the agent has ended, `None` if `done` will get it later.
    Wait(AgentId, SyncSender<Result<ExitInfo>>, Reply<Option<ExitInfo>>),
    List(Reply<Vec<AgentInfo>>),
    Listen(ListenConfig, Reply<()>),
    Audit(AuditQuery, Reply<Vec<AuditEntry>>),
    Metrics(AgentId, Reply<AgentMetrics>),
    Prewarm(Box<SpawnSpec>, usize, Reply<()>),
    /// Adds (`true`) or removes bus event types the host gets; answers the types it has.
    Subscribe(Vec<String>, bool, Reply<Vec<String>>),
    /// From the pool's filling thread: a warm sandbox for pool `.0`, or why it could not be made.
    Filled(usize, Box<Result<pool::WarmSandbox>>),
    /// From the state store's writer thread: batches committed, or failed.
    StateCommitted(store::Committed),
    /// From an HTTP or THINK worker: the outcome of in-flight request `.0`.
    NetDone(u64, Box<net::Outcome>),
    Shutdown,
}

/// A running runtime. Dropping it kills every agent and stops the reactor thread.
pub struct Runtime {
    commands: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
    events: Arc<EventHub>,
    think_host: Arc<net::llm::host::HostProvider>,
    thread: Option<JoinHandle<()>>,
}

/// How long a call from the host looks for its answer before it sleeps until it comes.
const CALL_SPIN: std::time::Duration = std::time::Duration::from_micros(300);

impl Runtime {
    /// Starts the reactor thread.
    pub fn start(config: RuntimeConfig) -> Result<Runtime> {
        let events = Arc::new(EventHub::new(config.event_capacity));
        let (commands, inbox) = mpsc::channel();
        let reactor = reactor::Reactor::new(config, inbox, commands.clone(), Arc::clone(&events))?;
        let waker = reactor.waker();
        let think_host = reactor.net.host();
        let thread = std::thread::Builder::new()
            .name("clove-reactor".into())
            .spawn(move || reactor.run())
            .map_err(|e| RuntimeError::io("starting the reactor thread", e))?;
        Ok(Runtime { commands, waker, events, think_host, thread: Some(thread) })
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(tx))?;
        // Most calls are answered within a few hundred microseconds, and waking a thread that went
        // to sleep for the answer costs about as much again on a virtual machine: look for it first,
        // giving the CPU away between looks, before sleeping.
        let look_until = std::time::Instant::now() + CALL_SPIN;
        while std::time::Instant::now() < look_until {
            match rx.try_recv() {
                Ok(reply) => return reply,
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                Err(mpsc::TryRecvError::Disconnected) => return Err(RuntimeError::Stopped),
            }
        }
        rx.recv().map_err(|_| RuntimeError::Stopped)?
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).map_err(|_| RuntimeError::Stopped)?;
        self.waker.wake().map_err(|e| RuntimeError::io("waking the reactor", e))
    }

    /// Serves agents started elsewhere on a Unix socket (mode 0600).
    pub fn listen(&self, config: ListenConfig) -> Result<()> {
        self.call(|r| Command::Listen(config, r))
    }

    /// Starts an agent process; it finds its channel to the runtime at `CLOVE_FD`.
    pub fn spawn(&self, spec: SpawnSpec) -> Result<AgentId> {
        self.call(|r| Command::Spawn(Box::new(spec), r))
    }

    /// Kills an agent and everything it started (SIGKILL to its process group).
    pub fn kill(&self, id: AgentId) -> Result<()> {
        self.call(|r| Command::Kill(id, r))
    }

    pub fn pause(&self, id: AgentId) -> Result<()> {
        self.call(|r| Command::Pause(id, r))
    }

    pub fn resume(&self, id: AgentId) -> Result<()> {
        self.call(|r| Command::Resume(id, r))
    }

    /// Waits for an agent to end, up to `timeout` (forever with `None`).
    pub fn wait(&self, id: AgentId, timeout: Option<Duration>) -> Result<ExitInfo> {
        let (done, ended) = mpsc::sync_channel(1);
        if let Some(exit) = self.call(|r| Command::Wait(id, done, r))? {
            return Ok(exit);
        }
        let received = match timeout {
            None => ended.recv().map_err(|_| RuntimeError::Stopped),
            Some(t) => wait_timeout(&ended, t, id),
        };
        received?
    }

    /// Every agent the runtime knows, running or recently ended.
    pub fn list(&self) -> Result<Vec<AgentInfo>> {
        self.call(Command::List)
    }

    /// Keeps `count` sandboxes shaped for `template` (what it shows, its network, stdio and limits)
    /// ready, so that spawning a sandboxed agent of that shape skips building one. Returns once they
    /// are ready; each one handed out is replaced in the background.
    pub fn prewarm(&self, template: SpawnSpec, count: usize) -> Result<()> {
        self.call(|r| Command::Prewarm(Box::new(template), count, r))
    }

    /// An agent's process figures, requests by opcode and cgroup counters.
    pub fn agent_metrics(&self, id: AgentId) -> Result<AgentMetrics> {
        self.call(|r| Command::Metrics(id, r))
    }

    pub fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        self.call(|r| Command::Audit(query, r))
    }

    /// Adds bus event types the host gets through [`Runtime::next_event`] and the callback, as
    /// [`EventKind::Bus`]: `MESSAGE_RECEIVED`, `STATE_CHANGED`, `SYSCALL_BLOCKED`,
    /// `RESOURCE_WARNING`, `CUSTOM`, a custom event's own name, or `*`. Lifecycle events always
    /// come, as their own kinds. Returns the types subscribed.
    pub fn subscribe(&self, types: &[&str]) -> Result<Vec<String>> {
        let types = types.iter().map(|t| t.to_string()).collect();
        self.call(|r| Command::Subscribe(types, true, r))
    }

    /// Removes bus event types the host gets; returns the types still subscribed.
    pub fn unsubscribe(&self, types: &[&str]) -> Result<Vec<String>> {
        let types = types.iter().map(|t| t.to_string()).collect();
        self.call(|r| Command::Subscribe(types, false, r))
    }

    /// The oldest unread event, waiting up to `timeout` (forever with `None`).
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<Event> {
        self.events.next(timeout)
    }

    /// Sets (or clears) a callback run on the reactor thread for every event.
    pub fn set_event_callback(&self, callback: Option<EventCallback>) {
        self.events.set_callback(callback);
    }

    /// Registers (or with `None` removes) the handler that answers THINK instead of the configured
    /// provider. Once this returns, the previous handler is not running and will not run again. It
    /// runs on THINK worker threads, never the reactor's; it must not call this method.
    pub fn set_think_handler(&self, handler: Option<ThinkHandler>) -> Result<()> {
        self.think_host.set(handler).map_err(|why| RuntimeError::Conflict(why.into()))
    }

    /// Kills every agent, removes the listening socket and joins the reactor thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A reactor that already stopped has dropped its inbox; joining is all that is left.
            let _ = self.send(Command::Shutdown);
            let _ = thread.join();
        }
    }
}

fn wait_timeout<T>(rx: &Receiver<Result<T>>, timeout: Duration, id: AgentId) -> Result<Result<T>> {
    rx.recv_timeout(timeout).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => RuntimeError::Timeout(format!("agent {id} still running after {timeout:?}")),
        mpsc::RecvTimeoutError::Disconnected => RuntimeError::Stopped,
    })
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}
