//! THINK's dispatch point. Every THINK from every agent passes through [`ThinkDispatch::submit`]
//! and waits there for one of the provider's `think_workers` slots, which bounds how many calls
//! the provider sees at once. Calls leave in arrival order; a fair queue (per-agent virtual token
//! counters, `core/src/fair`) replaces that order here, charging each call its usage when
//! `Reactor::net_done` learns it.

use crate::runtime::net::workers::{Job, WorkerPool};
use crate::runtime::net::NetError;

/// Calls that may wait for a slot, from all agents together.
const QUEUE_CAPACITY: usize = 256;

pub(in crate::runtime::net) struct ThinkDispatch {
    pool: WorkerPool,
}

impl ThinkDispatch {
    pub fn start(concurrency: usize) -> std::io::Result<ThinkDispatch> {
        Ok(ThinkDispatch { pool: WorkerPool::start("clove-think", concurrency, QUEUE_CAPACITY)? })
    }

    /// Queues one call; it runs when a slot is free.
    pub fn submit(&self, call: Job) -> Result<(), NetError> {
        self.pool.submit(call).map_err(|_| {
            NetError::LimitExceeded(format!("{QUEUE_CAPACITY} THINK calls are already waiting for the provider"))
        })
    }

    pub fn shutdown(&mut self) {
        self.pool.shutdown();
    }
}
