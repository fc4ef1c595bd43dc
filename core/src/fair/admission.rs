//! Provider admission: a cap on running requests and sliding one-minute windows of requests and
//! tokens, the caps an LLM gateway such as LiteLLM puts in front of a model.

use alloc::collections::VecDeque;

use super::Ticket;

/// The length of the rate windows.
pub const WINDOW_MS: u64 = 60_000;

/// A provider's caps; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    pub max_concurrent: Option<u32>,
    /// Requests started in the last minute.
    pub requests_per_min: Option<u32>,
    /// Input and output tokens of the requests started in the last minute: their estimates while
    /// they run, what they used once finished.
    pub tokens_per_min: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Started {
    at_ms: u64,
    ticket: Ticket,
    tokens: u64,
}

impl Started {
    fn leaves_window_at(&self) -> u64 {
        self.at_ms.saturating_add(WINDOW_MS)
    }
}

/// One provider's caps and what they count: the requests running and those started in the window.
#[derive(Debug, Clone, Default)]
pub(super) struct Gate {
    caps: Admission,
    running: u32,
    /// Oldest first; entries older than the window are dropped as requests start.
    started: VecDeque<Started>,
}

impl Gate {
    pub fn set_caps(&mut self, caps: Admission) {
        self.caps = caps;
    }

    /// Whether a request of `tokens` could start here at all, given time.
    pub fn can_ever_admit(&self, tokens: u64) -> bool {
        self.caps.max_concurrent != Some(0)
            && self.caps.requests_per_min != Some(0)
            && self.caps.tokens_per_min.is_none_or(|cap| tokens <= cap)
    }

    /// The earliest time, `now_ms` or later, at which a request of `tokens` may start if nothing else
    /// happens; `None` while every slot is taken (only a finish opens one) or a cap is zero.
    pub fn opens_at(&self, now_ms: u64, tokens: u64) -> Option<u64> {
        if self.caps.max_concurrent.is_some_and(|cap| self.running >= cap) {
            return None;
        }
        let in_window = || self.started.iter().filter(move |s| s.leaves_window_at() > now_ms);
        // Starts only leave the window from now on, so each cap's earliest time is found alone and
        // the request may start at the later of the two.
        let mut at = now_ms;
        if let Some(cap) = self.caps.requests_per_min {
            let count = in_window().count();
            if let Some(must_leave) = count.checked_sub(cap as usize) {
                at = at.max(in_window().nth(must_leave)?.leaves_window_at());
            }
        }
        if let Some(cap) = self.caps.tokens_per_min {
            // A request above the cap (lowered after it was submitted) waits for an empty window
            // instead of blocking its provider for ever.
            let need = tokens.min(cap);
            let mut counted = in_window().fold(0u64, |sum, s| sum.saturating_add(s.tokens));
            for leaving in in_window() {
                if counted.saturating_add(need) <= cap {
                    break;
                }
                counted = counted.saturating_sub(leaving.tokens);
                at = at.max(leaving.leaves_window_at());
            }
        }
        Some(at)
    }

    pub fn admits(&self, now_ms: u64, tokens: u64) -> bool {
        self.opens_at(now_ms, tokens) == Some(now_ms)
    }

    pub fn start(&mut self, now_ms: u64, ticket: Ticket, tokens: u64) {
        while self.started.front().is_some_and(|s| s.leaves_window_at() <= now_ms) {
            self.started.pop_front();
        }
        self.started.push_back(Started { at_ms: now_ms, ticket, tokens });
        self.running += 1;
    }

    /// A request that started at `started_ms` ended: its slot is free and the window counts the
    /// tokens it used.
    pub fn finish(&mut self, ticket: Ticket, started_ms: u64, used_tokens: u64) {
        self.running = self.running.saturating_sub(1);
        let from = self.started.partition_point(|s| s.at_ms < started_ms);
        let same_time = self.started.range_mut(from..).take_while(|s| s.at_ms == started_ms);
        if let Some(started) = same_time.into_iter().find(|s| s.ticket == ticket) {
            started.tokens = used_tokens;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(caps: Admission) -> Gate {
        let mut gate = Gate::default();
        gate.set_caps(caps);
        gate
    }

    #[test]
    fn concurrency_waits_for_a_finish_not_for_time() {
        let mut g = gate(Admission { max_concurrent: Some(2), ..Admission::default() });
        g.start(0, Ticket(1), 10);
        assert!(g.admits(0, 10));
        g.start(0, Ticket(2), 10);
        assert_eq!(g.opens_at(0, 10), None);
        g.finish(Ticket(1), 0, 10);
        assert!(g.admits(1, 10));
    }

    #[test]
    fn requests_per_minute_reopen_as_starts_leave_the_window() {
        let mut g = gate(Admission { requests_per_min: Some(2), ..Admission::default() });
        g.start(1_000, Ticket(1), 0);
        g.start(5_000, Ticket(2), 0);
        assert_eq!(g.opens_at(6_000, 0), Some(61_000));
        assert!(!g.admits(60_999, 0));
        assert!(g.admits(61_000, 0));
        g.start(61_000, Ticket(3), 0);
        assert_eq!(g.opens_at(61_000, 0), Some(65_000));
    }

    #[test]
    fn tokens_per_minute_count_usage_once_known() {
        let mut g = gate(Admission { tokens_per_min: Some(1_000), ..Admission::default() });
        g.start(0, Ticket(1), 600);
        g.start(10, Ticket(2), 300);
        assert!(g.admits(20, 100), "exactly at the cap fits");
        assert_eq!(g.opens_at(20, 101), Some(60_000));
        assert_eq!(g.opens_at(20, 800), Some(60_010));
        g.finish(Ticket(1), 0, 200);
        assert!(g.admits(20, 500), "the window counts what the first request used, not its estimate");
        assert_eq!(g.opens_at(20, 2_000), Some(60_010), "above the cap waits for an empty window");
        assert!(!gate(Admission { tokens_per_min: Some(1_000), ..Admission::default() }).can_ever_admit(1_001));
    }

    #[test]
    fn zero_caps_never_admit() {
        for caps in [
            Admission { max_concurrent: Some(0), ..Admission::default() },
            Admission { requests_per_min: Some(0), ..Admission::default() },
        ] {
            let g = gate(caps);
            assert!(!g.can_ever_admit(1));
            assert_eq!(g.opens_at(0, 1), None);
        }
    }
}
