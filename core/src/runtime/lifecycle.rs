//! Agent lifecycles: starting a process for an agent, noticing its end, restarting it with backoff,
//! killing, pausing and resuming it.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::Interest;

use super::agents::{Agent, AgentProcess, Leader, Origin};
use super::cgroup::{AgentCgroup, CgroupError, CgroupLimits, CgroupMode};
use super::conn::Conn;
use super::events::EventKind;
use super::reactor::{now_ms, slot_of, token, Reactor, Source, Timer};
use super::sandbox::CgroupEntry;
use super::{process, AgentId, Result, RuntimeError, SpawnSpec};
use crate::backoff::{Backoff, RestartDecision, RestartTracker};
use crate::policy::AgentPolicy;
use crate::protocol::{AgentState, ExitInfo, Limits, RestartPolicy};

pub(super) fn cgroup_limits(limits: &Limits) -> CgroupLimits {
    CgroupLimits {
        memory_bytes: limits.memory,
        cpu_quota_us: limits.cpu_quota,
        cpu_period_us: limits.cpu_period,
        cpu_shares: limits.cpu_shares,
        pids_max: limits.max_pids.map(u64::from),
    }
}

impl Reactor {
    /// Starts an agent for the host (`parent` None) or for another agent.
    pub(super) fn spawn_agent(
        &mut self,
        spec: Box<SpawnSpec>,
        parent: Option<AgentId>,
        policy: AgentPolicy,
    ) -> Result<AgentId> {
        if spec.argv.is_empty() {
            return Err(RuntimeError::InvalidArgument("spawn needs a program to run".into()));
        }
        let cwd = match &spec.cwd {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|e| RuntimeError::io("reading the working directory", e))?,
        };
        let restart = (spec.restart.policy != RestartPolicy::Never)
            .then(|| RestartTracker::new(spec.restart.clone(), Backoff::default()));
        if spec.vm.is_some() {
            super::vm::check_limits(&spec.limits)?;
        }
        let name = spec.name.clone();
        let id = self.agents.insert_with(|_| Agent::new(name, Origin::Spawned, 0, policy, parent, cwd));
        if let Some(agent) = self.agents.get_mut(id) {
            agent.restart = restart;
            agent.spec = Some(spec);
        }
        let warm = self.agents.get(id).and_then(|a| a.spec.as_deref().cloned()).and_then(|spec| self.take_warm(&spec));
        let warm_started = match warm {
            Some(warm) => self.start_warm(id, warm),
            None => Ok(false),
        };
        let started = match warm_started {
            Ok(true) => Ok(()),
            Err(e) => Err(e),
            // No warm sandbox, or one that had died waiting: built from scratch.
            Ok(false) => self.start_process(id),
        };
        match started {
            Ok(()) => Ok(id),
            Err(e) => {
                self.record(id, "lifecycle", "SPAWN_FAILED", false, serde_json::json!({ "error": e.to_string() }));
                self.agents.remove(id);
                Err(e)
            }
        }
    }

    /// The name of agent `id`'s cgroup, unique on the machine: this process, this runtime in it, this
    /// agent.
    fn cgroup_name(&self, id: AgentId) -> String {
        format!("agent-{}-{}-{}", std::process::id(), self.instance, id.0)
    }

    /// Creates the agent's cgroup with its limits. A machine that cannot enforce them refuses the spawn.
    fn give_cgroup(&mut self, id: AgentId) -> Result<()> {
        let limits = match self.agents.get(id).and_then(|a| a.spec.as_ref()) {
            Some(spec) => cgroup_limits(&spec.limits),
            None => return Err(RuntimeError::NotFound(id.to_string())),
        };
        let name = self.cgroup_name(id);
        let cgroup = self.cgroup_root()?.create(&name, &limits)?;
        if let Some(agent) = self.agents.get_mut(id) {
            agent.cgroup = Some(cgroup);
        }
        Ok(())
    }

    /// The cgroup of a VM agent's threads, with its CPU limits: where threads can have one of their
    /// own (cgroup v1). Without one a VM still runs, with no CPU limit, unless it asked for one:
    /// then the spawn fails with the reason.
    fn vm_cgroup(&mut self, id: AgentId, limits: &Limits) -> Result<Option<AgentCgroup>> {
        let cpu_only = CgroupLimits { memory_bytes: None, pids_max: None, ..cgroup_limits(limits) };
        let name = self.cgroup_name(id);
        let made = self.cgroup_root().and_then(|root| match root.mode() {
            CgroupMode::Unified => Err(CgroupError::ThreadsNeedV1.into()),
            CgroupMode::Legacy | CgroupMode::Hybrid => root.create(&name, &cpu_only).map_err(Into::into),
        });
        match made {
            Ok(cgroup) => Ok(Some(cgroup)),
            Err(e) if limits.cpu_quota.is_some() || limits.cpu_shares.is_some() => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Starts a spawned agent in a warm sandbox, which becomes its own (cgroup and work directory too).
    /// `Ok(false)` when the warm sandbox had died while it waited (it is cleaned up, and the caller
    /// starts the agent from scratch).
    fn start_warm(&mut self, id: AgentId, mut warm: super::pool::WarmSandbox) -> Result<bool> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let spec =
            agent.spec.as_ref().ok_or_else(|| RuntimeError::InvalidArgument("agent has no spawn spec".into()))?;
        let alive = warm.warm.process.try_exit().is_none();
        if !alive || super::sandbox::hand_out(&mut warm.warm, id, spec).is_err() {
            super::pool::end(&mut warm);
            return Ok(false);
        }
        agent.cgroup = Some(warm.cgroup);
        agent.work_dir = Some(warm.work);
        let super::sandbox::Warm { process, stream, confinement, .. } = warm.warm;
        agent.confinement = Some(confinement);
        self.adopt(id, process, stream).map(|()| true)
    }

    /// Starts (or starts again) the process of a spawned agent from its stored spec.
    pub(super) fn start_process(&mut self, id: AgentId) -> Result<()> {
        let home = self.config.home.clone();
        let vm_limits =
            self.agents.get(id).and_then(|a| a.spec.as_ref()).filter(|s| s.vm.is_some()).map(|s| s.limits.clone());
        let vm_cgroup = match vm_limits {
            Some(limits) => self.vm_cgroup(id, &limits)?,
            None => None,
        };
        // An agent with limits, or sandboxed, gets its cgroup now (a restarted one keeps its own). A
        // VM's boundary is its guest: its memory limit is its RAM, not a cgroup's. A sandbox's is made
        // while its init starts, except on cgroup2, where init is created in it (a process moving
        // itself there would wait for the kernel's threadgroup lock), so it must exist first.
        let wanted = self
            .agents
            .get(id)
            .filter(|a| a.cgroup.is_none())
            .and_then(|a| a.spec.as_ref())
            .filter(|s| s.vm.is_none() && (s.sandboxed || s.limits != Limits::default()))
            .map(|s| (s.sandboxed, cgroup_limits(&s.limits)));
        let new_sandbox_cgroup = match wanted {
            Some((true, limits)) if self.cgroup_root()?.mode() != CgroupMode::Unified => {
                Some((self.cgroup_root()?.clone(), self.cgroup_name(id), limits))
            }
            Some(_) => {
                self.give_cgroup(id)?;
                None
            }
            None => None,
        };
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let spec =
            agent.spec.as_ref().ok_or_else(|| RuntimeError::InvalidArgument("agent has no spawn spec".into()))?;
        let (process, stream) = if let Some(vm_spec) = spec.vm {
            let (vm, stream) = super::vm::start(id, spec, vm_spec, &self.config.vm, vm_cgroup)?;
            (AgentProcess::vm(vm).map_err(|e| RuntimeError::io("watching the VM", e))?, stream)
        } else if spec.sandboxed {
            let work = self.state_dir.join(id.to_string());
            let netns = match spec.network {
                true => None,
                false => self.netns.get_or_init(super::netns::NetnsPool::start).as_ref().and_then(|p| p.take()),
            };
            let mut made = None;
            let mut failed = None;
            let entry = match &new_sandbox_cgroup {
                Some((root, name, limits)) => CgroupEntry {
                    join: root.join_files(name),
                    make: Box::new(|| {
                        root.create(name, limits).map(|cgroup| made = Some(cgroup)).map_err(|e| {
                            let error = std::io::Error::other(e.to_string());
                            failed = Some(e);
                            error
                        })
                    }),
                    start_in: None,
                },
                None => CgroupEntry::existing(agent.cgroup.as_ref())?,
            };
            let started = super::sandbox::start(id, spec, &work, entry, netns.as_ref());
            agent.work_dir = Some(work);
            if made.is_some() {
                agent.cgroup = made;
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
            let (process, stream, confinement) = started?;
            agent.confinement = Some(confinement);
            (process, stream)
        } else {
            let joins = super::agents::join_files(agent.cgroup.as_ref());
            process::start_agent(id, &spec.argv, &agent.cwd, &home, &spec.env, &spec.stdio, joins)?
        };
        self.adopt(id, process, stream)
    }

    /// Makes a started process the agent's: its pidfd and channel join the poll.
    fn adopt(&mut self, id: AgentId, process: AgentProcess, stream: std::os::unix::net::UnixStream) -> Result<()> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let pid = process.pid;
        agent.pid = pid;
        agent.state = AgentState::Running;
        agent.started = Instant::now();
        agent.ended = None;
        agent.exit = None;
        agent.conn = Some(Conn::new(mio::net::UnixStream::from_std(stream), self.config.max_payload, true));
        let pidfd = process.pidfd.as_raw_fd();
        agent.process = Some(process);
        let registered = self
            .poll
            .registry()
            .register(&mut SourceFd(&pidfd), token(Source::AgentExit(slot_of(id))), Interest::READABLE)
            .and_then(|()| self.register_conn(id));
        if let Err(e) = registered {
            if let Some(p) = self.agents.get_mut(id).and_then(|a| a.process.take()) {
                p.kill_and_reap();
            }
            return Err(RuntimeError::io("registering the agent", e));
        }
        self.publish(id, EventKind::Spawned { pid });
        self.record(id, "lifecycle", "SPAWNED", true, serde_json::json!({ "pid": pid }));
        Ok(())
    }

    pub(super) fn check_agent_exit(&mut self, id: AgentId) {
        let exit = self.agents.get(id).and_then(|a| a.process.as_ref()).and_then(|p| p.try_exit());
        if let Some(exit) = exit {
            self.agent_ended(id, exit);
        }
    }

    /// Everything that follows an agent's process ending: its group, connection and exec jobs are
    /// cleaned up, waiters and the host are told, and the restart policy decides what is next.
    pub(super) fn agent_ended(&mut self, id: AgentId, exit: ExitInfo) {
        let registry = self.poll.registry();
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        let mut crash = None;
        if let Some(process) = agent.process.take() {
            let _ = registry.deregister(&mut SourceFd(&process.pidfd.as_raw_fd()));
            // Whatever it left running in its group goes with it.
            let _ = process.signal_group(clove_sys::process::SIGKILL);
            if let Leader::Vm(vm) = &process.leader {
                crash = vm.crash_reason();
            }
        }
        let mut exit = exit;
        if let Some(cgroup) = &agent.cgroup {
            // And whatever left its group but not its cgroup.
            let _ = cgroup.kill_all();
            let oom_kills = cgroup.oom_kills().unwrap_or(0);
            exit.oom_killed = oom_kills > agent.oom_kills_seen;
            agent.oom_kills_seen = oom_kills;
        }
        agent.state = AgentState::Exited;
        agent.exit = Some(exit);
        agent.ended = Some(Instant::now());
        let failed = exit.code != Some(0);
        let decision = match agent.restart.as_mut() {
            Some(tracker) => tracker.on_exit(now_ms(), failed),
            None => RestartDecision::Stop,
        };
        // Waiters wait for the agent to be done: not through a restart, and not before the cleanup
        // below.
        let waiters = match decision {
            RestartDecision::Restart { .. } => Vec::new(),
            RestartDecision::Stop | RestartDecision::Escalate => std::mem::take(&mut agent.waiters),
        };
        self.close_conn(id);
        self.abandon_execs_of(id);
        if let Some(reason) = crash {
            self.record(id, "lifecycle", "VM_CRASHED", false, serde_json::json!({ "reason": reason }));
        }
        if exit.oom_killed {
            self.publish(id, EventKind::Oom);
            self.record(id, "resource", "OOM_KILLED", false, serde_json::json!({}));
        }
        self.publish(id, EventKind::Exited(exit));
        self.record(
            id,
            "lifecycle",
            "EXITED",
            !failed,
            serde_json::json!({ "code": exit.code, "signal": exit.signal, "oom_killed": exit.oom_killed }),
        );
        match decision {
            RestartDecision::Restart { delay_ms, attempt } => {
                self.timers.insert((Instant::now() + Duration::from_millis(delay_ms), Timer::Restart(id)));
                self.publish(id, EventKind::Restarting { attempt, delay_ms });
                self.record(
                    id,
                    "lifecycle",
                    "RESTARTING",
                    true,
                    serde_json::json!({ "attempt": attempt, "delay_ms": delay_ms }),
                );
            }
            RestartDecision::Escalate => {
                self.publish(id, EventKind::Escalated);
                self.record(id, "lifecycle", "ESCALATED", false, serde_json::json!({}));
                self.retire(id);
            }
            RestartDecision::Stop => self.retire(id),
        }
        for waiter in waiters {
            let _ = waiter.send(Ok(exit));
        }
    }

    /// Tells everyone waiting on an agent that it is done, with its last exit.
    fn release_waiters(&mut self, id: AgentId) {
        let Some(agent) = self.agents.get_mut(id) else { return };
        let Some(exit) = agent.exit else { return };
        for waiter in agent.waiters.drain(..) {
            let _ = waiter.send(Ok(exit));
        }
    }

    /// An ended agent stays listed for a while; the oldest beyond the retention are forgotten. Its
    /// cgroup goes now: nothing will run in it again.
    pub(super) fn retire(&mut self, id: AgentId) {
        if let Some(mut cgroup) = self.agents.get_mut(id).and_then(|a| a.cgroup.take()) {
            let _ = cgroup.kill_all();
            let _ = cgroup.remove();
        }
        if let Some(work) = self.agents.get_mut(id).and_then(|a| a.work_dir.take()) {
            let _ = std::fs::remove_dir_all(work);
        }
        for old in self.agents.note_ended(id, self.config.exited_retention) {
            self.forget_agent(old);
        }
    }

    pub(super) fn kill_agent(&mut self, id: AgentId) -> Result<()> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        // A killed agent is not restarted; one that was waiting for its restart is done now.
        agent.restart = None;
        if self.restart_pending(id) {
            self.timers.retain(|(_, t)| *t != Timer::Restart(id));
            self.release_waiters(id);
            self.retire(id);
        }
        self.record(id, "lifecycle", "KILLED", true, serde_json::json!({}));
        let Some(agent) = self.agents.get(id) else { return Ok(()) };
        match (&agent.process, agent.origin) {
            (Some(process), _) => {
                process
                    .signal_group(clove_sys::process::SIGKILL)
                    .map_err(|e| RuntimeError::io(format!("killing agent {id}"), e))?;
                // Resume a paused agent so the kill is delivered promptly.
                let _ = process.signal_group(clove_sys::process::SIGCONT);
                if let Some(cgroup) = &agent.cgroup {
                    let _ = cgroup.thaw();
                }
            }
            (None, Origin::Connected) => self.close_conn(id),
            (None, Origin::Spawned) => {}
        }
        Ok(())
    }

    pub(super) fn set_paused(&mut self, id: AgentId, paused: bool) -> Result<()> {
        let agent = self.agents.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let Some(process) = &agent.process else {
            return Err(RuntimeError::Conflict(format!("agent {id} has no running process to pause or resume")));
        };
        let (signal, state, kind, event) = if paused {
            (clove_sys::process::SIGSTOP, AgentState::Paused, EventKind::Paused, "PAUSED")
        } else {
            (clove_sys::process::SIGCONT, AgentState::Running, EventKind::Resumed, "RESUMED")
        };
        if agent.state == state {
            return Ok(());
        }
        // The freezer stops every process of the cgroup and cannot be undone by the agent; SIGSTOP,
        // for agents without a cgroup, reaches its process group.
        match (&agent.cgroup, paused) {
            (Some(cgroup), true) => cgroup.freeze()?,
            (Some(cgroup), false) => cgroup.thaw()?,
            (None, _) => {
                process.signal_group(signal).map_err(|e| RuntimeError::io(format!("signalling agent {id}"), e))?
            }
        }
        agent.state = state;
        self.publish(id, kind);
        self.record(id, "lifecycle", event, true, serde_json::json!({}));
        Ok(())
    }

    /// Kills the exec jobs an agent started; their results have nobody to go to.
    pub(super) fn abandon_execs_of(&mut self, id: AgentId) {
        let keys: Vec<u64> = self.execs.iter().filter(|(_, j)| j.caller.agent == id).map(|(k, _)| k).collect();
        for key in keys {
            if let Some(job) = self.execs.get_mut(key) {
                job.abandon();
            }
        }
    }

    pub(super) fn restart(&mut self, id: AgentId) {
        let restartable = self.agents.get(id).is_some_and(|a| a.state == AgentState::Exited && a.restart.is_some());
        if restartable && self.start_process(id).is_err() {
            // Starting again failed (the program vanished): the agent stays ended.
            self.release_waiters(id);
            self.retire(id);
        }
    }
}
