//! Warm sandboxes: made ahead of time for a shape of agent (what it shows, its network, stdio and
//! limits), already in their cgroups, so that spawning such an agent only writes one line to a
//! waiting shell instead of paying for namespaces, mounts and the cgroup.

use std::collections::VecDeque;
use std::path::PathBuf;

use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::Waker;

use super::cgroup::{AgentCgroup, CgroupRoot};
use super::lifecycle::cgroup_limits;
use super::reactor::Reactor;
use super::sandbox::{self, Shape, Warm};
use super::{Command, Result, RuntimeError, SpawnSpec};

/// One warm sandbox and what it owns on the host.
pub(super) struct WarmSandbox {
    pub warm: Warm,
    pub cgroup: AgentCgroup,
    pub work: PathBuf,
}

/// Warm sandboxes of one shape, kept at `size`.
pub(super) struct Pool {
    template: Box<SpawnSpec>,
    shape: Shape,
    ready: VecDeque<WarmSandbox>,
    size: usize,
}

impl Reactor {
    /// Keeps `size` sandboxes shaped for `template` ready; fills them now.
    pub(super) fn prewarm(&mut self, template: Box<SpawnSpec>, size: usize) -> Result<()> {
        if !template.sandboxed {
            return Err(RuntimeError::InvalidArgument("only sandboxed agents are prewarmed".into()));
        }
        let shape = sandbox::shape(&template)?;
        let index = match self.pools.iter().position(|p| p.shape == shape) {
            Some(i) => i,
            None => {
                self.pools.push(Pool { template, shape, ready: VecDeque::new(), size: 0 });
                self.pools.len() - 1
            }
        };
        self.pools[index].size = size;
        while self.pools[index].ready.len() < size {
            self.fill_one(index)?;
        }
        Ok(())
    }

    /// Starts one more warm sandbox for pool `index`.
    pub(super) fn fill_one(&mut self, index: usize) -> Result<()> {
        self.warm_count += 1;
        let name = format!("agent-{}-{}-warm{}", std::process::id(), self.instance, self.warm_count);
        let work = self.state_dir.join(format!("warm{}", self.warm_count));
        let Some(pool) = self.pools.get(index) else { return Ok(()) };
        let limits = cgroup_limits(&pool.template.limits);
        let template = pool.template.clone();
        let cgroup = self.cgroup_root()?.create(&name, &limits)?;
        let warm = sandbox::start_warm(&template, &work, &cgroup)?;
        if let Some(pool) = self.pools.get_mut(index) {
            pool.ready.push_back(WarmSandbox { warm, cgroup, work });
        }
        Ok(())
    }

    /// A warm sandbox that fits `spec`, if one is ready; its pool is refilled in the background.
    pub(super) fn take_warm(&mut self, spec: &SpawnSpec) -> Option<WarmSandbox> {
        if !spec.sandboxed || self.pools.is_empty() {
            return None;
        }
        let shape = sandbox::shape(spec).ok()?;
        let index = self.pools.iter().position(|p| p.shape == shape)?;
        let taken = self.pools[index].ready.pop_front()?;
        // Asked once this turn's replies are out: waking the filling thread can take the CPU from
        // the reactor (two CPUs, a sandbox to build) before the spawn is answered.
        self.fills_due.push(index);
        Some(taken)
    }

    /// Asks for the refills the sandboxes handed out this turn call for.
    pub(super) fn request_due_fills(&mut self) {
        for index in std::mem::take(&mut self.fills_due) {
            self.request_fill(index);
        }
    }

    /// Asks the filling thread for one more sandbox for pool `index`: making one takes tens of
    /// milliseconds, which the reactor must not spend.
    fn request_fill(&mut self, index: usize) {
        let Ok(root) = self.cgroup_root().cloned() else { return };
        let Some(pool) = self.pools.get(index) else { return };
        let template = pool.template.clone();
        self.warm_count += 1;
        let request = FillRequest {
            pool: index,
            name: format!("agent-{}-{}-warm{}", std::process::id(), self.instance, self.warm_count),
            work: self.state_dir.join(format!("warm{}", self.warm_count)),
            template,
        };
        let (outbox, waker) = (self.outbox.clone(), Arc::clone(&self.waker));
        let filler = self.filler.get_or_insert_with(|| spawn_filler(root, outbox, waker));
        let _ = filler.send(request);
    }

    /// A sandbox from the filling thread joins its pool (or, past the pool's size, is ended).
    pub(super) fn filled(&mut self, index: usize, made: Result<WarmSandbox>) {
        let Ok(mut sandbox) = made else { return };
        match self.pools.get_mut(index) {
            Some(pool) if pool.ready.len() < pool.size => pool.ready.push_back(sandbox),
            _ => end(&mut sandbox),
        }
    }

    /// Ends every warm sandbox, for shutdown.
    pub(super) fn drain_pools(&mut self) {
        for pool in &mut self.pools {
            for mut sandbox in pool.ready.drain(..) {
                end(&mut sandbox);
            }
        }
    }
}

/// What the filling thread is asked to make.
pub(super) struct FillRequest {
    pool: usize,
    name: String,
    work: PathBuf,
    template: Box<SpawnSpec>,
}

/// Ends a warm sandbox nobody will use, leaving nothing behind.
pub(super) fn end(sandbox: &mut WarmSandbox) {
    sandbox.warm.process.kill_and_reap();
    let _ = sandbox.cgroup.kill_all();
    let _ = sandbox.cgroup.remove();
    let _ = std::fs::remove_dir_all(&sandbox.work);
}

/// How long a refill waits before building, so the agent that took a sandbox starts unhindered.
const REFILL_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The filling thread: makes warm sandboxes and hands them to the reactor through its inbox. It
/// lives as long as the runtime, since the sandboxes it starts die with it (`PR_SET_PDEATHSIG`).
fn spawn_filler(root: CgroupRoot, outbox: Sender<Command>, waker: Arc<Waker>) -> Sender<FillRequest> {
    let (requests, inbox) = std::sync::mpsc::channel::<FillRequest>();
    // Without the thread, requests go nowhere and pools are not refilled: spawns fall back to cold.
    let _ = std::thread::Builder::new().name("clove-pool".into()).spawn(move || {
        for request in inbox {
            // Building a sandbox takes a CPU for a few milliseconds: started at once, a refill
            // would slow the start of the agent that was just handed the sandbox it replaces.
            std::thread::sleep(REFILL_PAUSE);
            let made = make(&root, &request).map(|(warm, cgroup)| WarmSandbox { warm, cgroup, work: request.work });
            if outbox.send(Command::Filled(request.pool, Box::new(made))).is_err() || waker.wake().is_err() {
                return;
            }
        }
    });
    requests
}

fn make(root: &CgroupRoot, request: &FillRequest) -> Result<(Warm, AgentCgroup)> {
    let cgroup = root.create(&request.name, &cgroup_limits(&request.template.limits))?;
    let warm = sandbox::start_warm(&request.template, &request.work, &cgroup)?;
    Ok((warm, cgroup))
}
