//! Results of a connection's async EXECs, served in the guest and waiting for ASYNC_POLL. The rules
//! are the process tier's: at most 64 pending or running per connection, and one poll returns as
//! many as fit a frame (at least one).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use clove_core::protocol::{AsyncPollRequest, AsyncResult};

/// Results waiting for ASYNC_POLL, plus async jobs still running, per connection.
pub const MAX_ASYNC_PENDING: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("{MAX_ASYNC_PENDING} async results are pending: collect them with ASYNC_POLL")]
pub struct QueueFull;

#[derive(Default)]
struct State {
    results: VecDeque<AsyncResult>,
    running: usize,
}

#[derive(Default)]
pub struct AsyncResults(Mutex<State>);

impl AsyncResults {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change is one push, pop or count: consistent whatever panicked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more running job.
    pub fn reserve(&self) -> Result<(), QueueFull> {
        let mut state = self.lock();
        if state.running + state.results.len() >= MAX_ASYNC_PENDING {
            return Err(QueueFull);
        }
        state.running += 1;
        Ok(())
    }

    /// A reserved job's result.
    pub fn complete(&self, result: AsyncResult) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        state.results.push_back(result);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().results.is_empty()
    }

    /// Up to `max` results (0: the default) that fit in `room` bytes; the first always goes.
    pub fn take(&self, max: u32, room: usize) -> Vec<AsyncResult> {
        let mut state = self.lock();
        let fitting = AsyncPollRequest { max }.batch_len(state.results.make_contiguous(), room);
        state.results.drain(..fitting).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u32, len: usize) -> AsyncResult {
        AsyncResult { request_id: id, opcode: 2, error: None, payload: vec![0; len] }
    }

    #[test]
    fn bounded_and_polled_in_frame_sized_batches() {
        let q = AsyncResults::default();
        for _ in 0..MAX_ASYNC_PENDING {
            q.reserve().unwrap();
        }
        assert!(q.reserve().is_err(), "running jobs count against the bound");
        for id in 0..3 {
            q.complete(result(id, 100));
        }
        let first = q.take(0, 150);
        assert_eq!(first.iter().map(|r| r.request_id).collect::<Vec<_>>(), [0], "only one fits");
        assert_eq!(q.take(1, 1), [result(1, 100)], "the first always goes");
        assert_eq!(q.take(0, 1 << 20).len(), 1);
        assert!(q.is_empty());
    }
}
