//! Restart decisions for a supervised agent: exponential backoff, a restart budget per window, and
//! one escalation when the budget is spent. Sans-IO: time comes in as milliseconds.

use crate::protocol::{RestartPolicy, RestartSpec};

/// Backoff timing: the first delay, doubled after each consecutive failure up to the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial_ms: 1_000, max_ms: 60_000 }
    }
}

/// What to do after an agent's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after `delay_ms`; this is restart number `attempt` in the current window.
    Restart { delay_ms: u64, attempt: u32 },
    /// The budget is spent: say so once, and never restart again.
    Escalate,
    /// Leave it ended.
    Stop,
}

/// The restart state of one agent.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    spec: RestartSpec,
    backoff: Backoff,
    restarts_in_window: u32,
    window_start_ms: Option<u64>,
    escalated: bool,
}

impl RestartTracker {
    pub fn new(spec: RestartSpec, backoff: Backoff) -> Self {
        RestartTracker { spec, backoff, restarts_in_window: 0, window_start_ms: None, escalated: false }
    }

    /// Decides what follows an exit at `now_ms`; `failed` is a non-zero code or a signal.
    pub fn on_exit(&mut self, now_ms: u64, failed: bool) -> RestartDecision {
        let wanted = match self.spec.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !wanted || self.escalated {
            return RestartDecision::Stop;
        }
        let window_ms = u64::from(self.spec.window_s) * 1_000;
        match self.window_start_ms {
            Some(start) if now_ms.saturating_sub(start) < window_ms => {}
            _ => {
                self.window_start_ms = Some(now_ms);
                self.restarts_in_window = 0;
            }
        }
        if self.restarts_in_window >= self.spec.max_restarts {
            self.escalated = true;
            return RestartDecision::Escalate;
        }
        let doublings = self.restarts_in_window.min(63);
        let delay_ms = self.backoff.initial_ms.saturating_mul(1u64 << doublings).min(self.backoff.max_ms);
        self.restarts_in_window += 1;
        RestartDecision::Restart { delay_ms, attempt: self.restarts_in_window }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(policy: RestartPolicy, max_restarts: u32) -> RestartTracker {
        RestartTracker::new(RestartSpec { policy, max_restarts, window_s: 300 }, Backoff::default())
    }

    #[test]
    fn on_failure_doubles_then_escalates_once() {
        let mut t = tracker(RestartPolicy::OnFailure, 3);
        let mut now = 0;
        let mut delays = alloc::vec::Vec::new();
        loop {
            match t.on_exit(now, true) {
                RestartDecision::Restart { delay_ms, attempt } => {
                    delays.push((delay_ms, attempt));
                    now += delay_ms + 200;
                }
                RestartDecision::Escalate => break,
                RestartDecision::Stop => panic!("stopped before escalating"),
            }
        }
        assert_eq!(delays, [(1_000, 1), (2_000, 2), (4_000, 3)]);
        assert_eq!(t.on_exit(now, true), RestartDecision::Stop);
    }

    #[test]
    fn policies_decide_which_exits_restart() {
        assert_eq!(tracker(RestartPolicy::OnFailure, 5).on_exit(0, false), RestartDecision::Stop);
        assert_eq!(tracker(RestartPolicy::Never, 5).on_exit(0, true), RestartDecision::Stop);
        assert!(matches!(tracker(RestartPolicy::Always, 5).on_exit(0, false), RestartDecision::Restart { .. }));
    }

    #[test]
    fn delay_is_capped_and_window_resets_the_budget() {
        let mut t = RestartTracker::new(
            RestartSpec { policy: RestartPolicy::Always, max_restarts: 100, window_s: 1_000 },
            Backoff { initial_ms: 1_000, max_ms: 5_000 },
        );
        let delays: alloc::vec::Vec<u64> = (0..5)
            .map(|i| match t.on_exit(i, true) {
                RestartDecision::Restart { delay_ms, .. } => delay_ms,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 5_000, 5_000]);
        // After the window has passed, the count and the delay start over.
        assert_eq!(t.on_exit(2_000_000, true), RestartDecision::Restart { delay_ms: 1_000, attempt: 1 });
    }
}
