//! The agent table: every agent's record, keyed by its [`AgentId`].

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use super::cgroup::AgentCgroup;
use super::conn::Conn;
use super::ids::SlotMap;
use super::vm::GuestVm;
use super::{AgentId, Reply, SpawnSpec};
use crate::backoff::RestartTracker;
use crate::policy::AgentPolicy;
use crate::protocol::{AgentInfo, AgentState, AsyncResult, ExitInfo};

/// How an agent came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Started by the runtime, for the host or for another agent.
    Spawned,
    /// Connected on the listening socket; it lives as long as its connection.
    Connected,
}

/// A running process (an agent's, or an EXEC's), watched through its pidfd; or a microVM agent's
/// VM, watched through its exit eventfd.
pub(super) struct AgentProcess {
    pub pid: u32,
    /// Readable once it has ended.
    pub pidfd: OwnedFd,
    pub leader: Leader,
}

/// What the process leads, and so how a signal reaches everything it started.
pub(super) enum Leader {
    /// Its own process group: signals go to the group.
    ProcessGroup,
    /// A sandbox's pid namespace, as its init: SIGKILL to init ends the namespace, and init
    /// forwards the polite signals to the program.
    PidNamespace,
    /// A VM: SIGKILL stops it, SIGSTOP and SIGCONT pause and resume its vCPUs; the guest is its own
    /// world, so nothing else reaches in.
    Vm(Box<GuestVm>),
}

impl AgentProcess {
    /// A VM agent's: its pidfd is a copy of the VM's exit eventfd.
    pub fn vm(vm: GuestVm) -> std::io::Result<AgentProcess> {
        Ok(AgentProcess { pid: vm.pid(), pidfd: vm.exit_fd()?, leader: Leader::Vm(Box::new(vm)) })
    }

    /// How it ended, reaping it, or `None` while it runs.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        match &self.leader {
            Leader::Vm(vm) => vm.try_exit(),
            _ => clove_sys::process::pidfd_wait(&self.pidfd, false).ok().flatten().map(exit_info),
        }
    }

    /// Waits for it to end and reaps it.
    pub fn wait(&self) -> Option<ExitInfo> {
        match &self.leader {
            Leader::Vm(vm) => Some(vm.wait()),
            _ => clove_sys::process::pidfd_wait(&self.pidfd, true).ok().flatten().map(exit_info),
        }
    }

    /// Signals everything it started: its process group, or its sandbox through init. A VM takes
    /// SIGKILL, SIGSTOP and SIGCONT.
    pub fn signal_group(&self, signal: i32) -> std::io::Result<()> {
        match &self.leader {
            Leader::ProcessGroup => clove_sys::process::signal_group(self.pid, signal),
            Leader::PidNamespace => clove_sys::process::pidfd_signal(&self.pidfd, signal),
            Leader::Vm(vm) => match signal {
                clove_sys::process::SIGKILL => {
                    vm.kill();
                    Ok(())
                }
                clove_sys::process::SIGSTOP => vm.set_paused(true),
                clove_sys::process::SIGCONT => vm.set_paused(false),
                _ => {
                    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "a VM takes only kill, pause and resume"))
                }
            },
        }
    }

    /// Kills its whole process group and reaps it.
    pub fn kill_and_reap(&self) {
        let _ = self.signal_group(clove_sys::process::SIGKILL);
        // A stopped group takes the kill only once it runs again.
        let _ = self.signal_group(clove_sys::process::SIGCONT);
        self.wait();
    }

    pub fn is_vm(&self) -> bool {
        matches!(self.leader, Leader::Vm(_))
    }
}

fn exit_info(exit: clove_sys::process::Exit) -> ExitInfo {
    ExitInfo { code: exit.code, signal: exit.signal, oom_killed: false }
}

pub(super) struct Agent {
    pub name: String,
    pub origin: Origin,
    pub pid: u32,
    pub process: Option<AgentProcess>,
    pub conn: Option<Conn>,
    pub policy: AgentPolicy,
    pub parent: Option<AgentId>,
    /// The root of its spawn tree, whose session-scoped state it shares; `None` when it is the root.
    pub session: Option<AgentId>,
    pub state: AgentState,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub exit: Option<ExitInfo>,
    pub cwd: PathBuf,
    pub waiters: Vec<Reply<ExitInfo>>,
    pub async_results: VecDeque<AsyncResult>,
    /// What started it, kept to start it again; `None` for connected agents.
    pub spec: Option<Box<SpawnSpec>>,
    pub restart: Option<RestartTracker>,
    /// Requests it made, by opcode byte.
    pub syscalls: std::collections::BTreeMap<u8, u64>,
    /// Its own cgroup, when it has limits or a sandbox; it outlives restarts.
    pub cgroup: Option<AgentCgroup>,
    /// OOM kills already reported, so each is reported once.
    pub oom_kills_seen: u64,
    /// A sandboxed agent's private work directory on the host, removed when it is done.
    pub work_dir: Option<PathBuf>,
    /// What its EXECs share with it, when it is sandboxed.
    pub confinement: Option<super::sandbox::Confinement>,
    /// Messages from other agents, for RECV.
    pub mailbox: super::ipc::Mailbox,
    /// The event types it subscribed to, and their queue, for POLL_EVENTS.
    pub subscription: super::bus::Subscription,
    /// A recording it is replaying: its recorded syscalls are answered from it.
    pub replay: Option<super::record::Replay>,
    /// THINK tokens and calls spent, against its quota.
    pub llm_usage: super::net::LlmUsage,
}

/// The files a new process of the agent's cgroup, if it has one, writes itself into before it runs.
pub(super) fn join_files(cgroup: Option<&AgentCgroup>) -> Vec<std::ffi::CString> {
    cgroup.map(AgentCgroup::join_files).unwrap_or_default()
}

impl Agent {
    pub fn new(
        name: String,
        origin: Origin,
        pid: u32,
        policy: AgentPolicy,
        parent: Option<AgentId>,
        cwd: PathBuf,
    ) -> Agent {
        Agent {
            name,
            origin,
            pid,
            process: None,
            conn: None,
            policy,
            parent,
            session: None,
            state: AgentState::Running,
            started: Instant::now(),
            ended: None,
            exit: None,
            cwd,
            waiters: Vec::new(),
            async_results: Default::default(),
            spec: None,
            restart: None,
            syscalls: Default::default(),
            cgroup: None,
            oom_kills_seen: 0,
            work_dir: None,
            confinement: None,
            mailbox: Default::default(),
            subscription: Default::default(),
            replay: None,
            llm_usage: Default::default(),
        }
    }

    pub fn info(&self, id: AgentId, now: Instant) -> AgentInfo {
        let until = self.ended.unwrap_or(now);
        AgentInfo {
            id: id.0,
            name: self.name.clone(),
            pid: self.pid,
            state: self.state,
            uptime_ms: until.saturating_duration_since(self.started).as_millis() as u64,
            level: self.policy.level,
            parent: self.parent.map(|p| p.0),
            exit: self.exit,
        }
    }

    /// The filesystem its READ and WRITE requests name: its sandbox's, or the host's.
    pub fn view(&self) -> super::fs::View<'_> {
        match &self.confinement {
            Some(confinement) => super::fs::View::Sandbox(&confinement.view),
            None => super::fs::View::Host { cwd: &self.cwd },
        }
    }

    pub fn is_running(&self) -> bool {
        self.state != AgentState::Exited
    }
}

/// Every agent, and the order in which ended ones are forgotten.
#[derive(Default)]
pub(super) struct AgentTable {
    map: SlotMap<Agent>,
    ended: VecDeque<AgentId>,
}

impl AgentTable {
    pub fn insert_with(&mut self, make: impl FnOnce(AgentId) -> Agent) -> AgentId {
        let id = AgentId(self.map.insert_with(|key| make(AgentId(key))));
        // A child joins its parent's session, fixed now so that it outlives the parent's record.
        let session = self.get(id).and_then(|a| a.parent).map(|parent| self.session_of(parent));
        if let Some(agent) = self.get_mut(id) {
            agent.session = session;
        }
        id
    }

    /// The session an agent belongs to: the root of its spawn tree.
    pub fn session_of(&self, id: AgentId) -> AgentId {
        self.get(id).and_then(|a| a.session).unwrap_or(id)
    }

    pub fn get(&self, id: AgentId) -> Option<&Agent> {
        self.map.get(id.0)
    }

    pub fn get_mut(&mut self, id: AgentId) -> Option<&mut Agent> {
        self.map.get_mut(id.0)
    }

    /// The agent in a slot, whatever its generation: how poll tokens find their agent.
    pub fn id_at_slot(&self, slot: usize) -> Option<AgentId> {
        self.map.key_at_slot(slot).map(AgentId)
    }

    pub fn remove(&mut self, id: AgentId) -> Option<Agent> {
        self.map.remove(id.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (AgentId, &Agent)> {
        self.map.iter().map(|(k, a)| (AgentId(k), a))
    }

    pub fn ids(&self) -> Vec<AgentId> {
        self.iter().map(|(id, _)| id).collect()
    }

    /// The running agent with this name, else the newest ended one.
    pub fn find_by_name(&self, name: &str) -> Option<AgentId> {
        let mut found = None;
        for (id, agent) in self.iter().filter(|(_, a)| a.name == name) {
            if agent.is_running() {
                return Some(id);
            }
            found = Some(id);
        }
        found
    }

    /// Whether `id` descends from `ancestor` (is its child, grandchild, ...).
    pub fn is_descendant(&self, id: AgentId, ancestor: AgentId) -> bool {
        let mut current = self.get(id).and_then(|a| a.parent);
        // Parents are always older agents, but bound the walk anyway.
        for _ in 0..self.map.len() {
            match current {
                Some(p) if p == ancestor => return true,
                Some(p) => current = self.get(p).and_then(|a| a.parent),
                None => return false,
            }
        }
        false
    }

    /// Notes that an agent ended; returns the ids of ended agents past the retention to forget.
    pub fn note_ended(&mut self, id: AgentId, retention: usize) -> Vec<AgentId> {
        self.ended.push_back(id);
        let mut forget = Vec::new();
        while self.ended.len() > retention {
            if let Some(old) = self.ended.pop_front() {
                forget.push(old);
            }
        }
        forget
    }
}
