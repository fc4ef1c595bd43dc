//! THINK's dispatch point. Every THINK from every agent waits here in a fair queue (`core/src/fair`:
//! per-agent virtual token counters, VTC) for one of the provider's `think_workers` slots and, when
//! set, room in its requests-per-minute and tokens-per-minute windows. The agent with the least
//! service so far goes next, so one agent's flood of calls cannot starve the others; each call is
//! charged what it actually used when it ends.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::fair::{Admission, Charge, FairError, FairQueue, ProviderId, Ticket, Tokens};
use crate::runtime::net::workers::{Job, WorkerPool};
use crate::runtime::net::{NetError, ThinkOrder};
use crate::runtime::AgentId;

/// Calls that may wait for a slot, from all agents together.
const QUEUE_CAPACITY: usize = 256;
/// THINK goes to one provider: the host's handler, or the one configured.
const PROVIDER: ProviderId = ProviderId(0);

/// How much THINK the provider takes.
#[derive(Debug, Clone, Copy)]
pub(in crate::runtime::net) struct ThinkLimits {
    pub concurrency: usize,
    pub order: ThinkOrder,
    pub requests_per_min: Option<u32>,
    pub tokens_per_min: Option<u64>,
}

pub(in crate::runtime::net) struct ThinkDispatch {
    /// Waiting calls, with the in-flight key each reports under.
    queue: FairQueue<(u64, Job)>,
    order: ThinkOrder,
    waiting: usize,
    /// The fair queue's ticket of each running call, by its in-flight key.
    running: BTreeMap<u64, Ticket>,
    pool: WorkerPool,
    epoch: Instant,
}

impl ThinkDispatch {
    pub fn start(limits: ThinkLimits) -> std::io::Result<ThinkDispatch> {
        let concurrency = limits.concurrency.max(1);
        let mut queue = FairQueue::new(Charge::default());
        let caps = Admission {
            max_concurrent: Some(u32::try_from(concurrency).unwrap_or(u32::MAX)),
            requests_per_min: limits.requests_per_min,
            tokens_per_min: limits.tokens_per_min,
        };
        queue.set_provider(PROVIDER, caps);
        // The fair queue starts no more calls than there are threads, so the pool never queues.
        let pool = WorkerPool::start("clove-think", concurrency, concurrency)?;
        Ok(ThinkDispatch {
            queue,
            order: limits.order,
            waiting: 0,
            running: BTreeMap::new(),
            pool,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Queues a call of `agent`, estimated at `input_tokens`; it starts in fair order. Returns when
    /// to look again (see [`ThinkDispatch::start_ready`]).
    pub fn submit(&mut self, key: u64, agent: AgentId, input_tokens: u64, call: Job) -> Result<Option<u64>, NetError> {
        if self.waiting >= QUEUE_CAPACITY {
            return Err(NetError::LimitExceeded(format!(
                "{QUEUE_CAPACITY} THINK calls are already waiting for the provider"
            )));
        }
        let estimate = Tokens { input: input_tokens, output: 0 };
        // In arrival order every call is one client's, whose own requests the queue keeps in order.
        let client = match self.order {
            ThinkOrder::Fair => agent.0,
            ThinkOrder::Arrival => 0,
        };
        self.queue.submit(self.now_ms(), client, PROVIDER, estimate, (key, call)).map_err(|e| match e {
            FairError::NeverAdmitted { .. } => NetError::LimitExceeded(format!("THINK: {e}")),
            other => NetError::Invalid(other.to_string()),
        })?;
        self.waiting += 1;
        Ok(self.start_ready())
    }

    /// Starts every call whose turn has come. Returns in how many milliseconds a rate window
    /// reopens for a call still waiting, if one is.
    pub fn start_ready(&mut self) -> Option<u64> {
        let now = self.now_ms();
        while let Some(dispatch) = self.queue.next(now) {
            self.waiting -= 1;
            let (key, job) = dispatch.item;
            self.running.insert(key, dispatch.ticket);
            // Only a pool that was shut down refuses: the runtime is stopping.
            let _ = self.pool.submit(job);
        }
        self.queue.next_wakeup(now).map(|at| at.saturating_sub(now))
    }

    /// The call under `key` ended having used `used`: charged, and the next ones may start.
    pub fn finish(&mut self, key: u64, used: Tokens) -> Option<u64> {
        if let Some(ticket) = self.running.remove(&key) {
            let now = self.now_ms();
            let _ = self.queue.finish(now, ticket, used);
        }
        self.start_ready()
    }

    /// `agent` is gone: its waiting calls are dropped; returns their keys. Its running calls end
    /// as they will.
    pub fn remove_agent(&mut self, agent: AgentId) -> Vec<u64> {
        if self.order == ThinkOrder::Arrival {
            // Its calls are not told apart from the others': they run, with nobody to answer.
            return Vec::new();
        }
        let dropped: Vec<u64> = self.queue.remove_agent(agent.0).into_iter().map(|(key, _)| key).collect();
        self.waiting -= dropped.len();
        dropped
    }

    pub fn shutdown(&mut self) {
        self.pool.shutdown();
    }
}
