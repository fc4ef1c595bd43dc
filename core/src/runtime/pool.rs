//! Warm sandboxes: made ahead of time for a shape of agent (what it shows, its network, stdio and
//! limits), already in their cgroups, so that spawning such an agent only writes one line to a
//! waiting shell instead of paying for namespaces, mounts and the cgroup move.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use super::cgroup::AgentCgroup;
use super::lifecycle::cgroup_limits;
use super::reactor::{Reactor, Timer};
use super::sandbox::{self, Shape, Warm};
use super::{Result, RuntimeError, SpawnSpec};

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

    /// A warm sandbox that fits `spec`, if one is ready; its pool is refilled soon after.
    pub(super) fn take_warm(&mut self, spec: &SpawnSpec) -> Option<WarmSandbox> {
        if !spec.sandboxed || self.pools.is_empty() {
            return None;
        }
        let shape = sandbox::shape(spec).ok()?;
        let index = self.pools.iter().position(|p| p.shape == shape)?;
        let taken = self.pools[index].ready.pop_front()?;
        // Refilled from the poll loop, after this spawn has been answered.
        self.timers.insert((Instant::now(), Timer::Refill(index)));
        Some(taken)
    }

    /// Tops pool `index` up by one, and asks again while it is short.
    pub(super) fn refill(&mut self, index: usize) {
        let short = self.pools.get(index).is_some_and(|p| p.ready.len() < p.size);
        if short && self.fill_one(index).is_ok() && self.pools.get(index).is_some_and(|p| p.ready.len() < p.size) {
            self.timers.insert((Instant::now(), Timer::Refill(index)));
        }
    }

    /// Ends every warm sandbox, for shutdown.
    pub(super) fn drain_pools(&mut self) {
        for pool in &mut self.pools {
            for mut sandbox in pool.ready.drain(..) {
                sandbox.warm.process.kill_and_reap();
                let _ = sandbox.cgroup.kill_all();
                let _ = sandbox.cgroup.remove();
                let _ = std::fs::remove_dir_all(&sandbox.work);
            }
        }
    }
}
