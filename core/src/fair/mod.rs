//! The fair LLM queue: many agents share a few providers, and each provider starts the waiting
//! requests in the order of the Virtual Token Counter (VTC, Sheng et al., OSDI'24).
//!
//! Sans-IO: time comes in as `now_ms` (monotonic milliseconds), and nothing here calls a provider.
//! The runtime's call order:
//! 1. [`FairQueue::submit`] a THINK request (quotas are checked here) and keep its [`Ticket`];
//! 2. call [`FairQueue::next`] until it returns `None`, sending each [`Dispatch`] to its provider;
//! 3. arm a timer for [`FairQueue::next_wakeup`] (when a rate window reopens) and go back to 2 when
//!    it fires or after any submit or finish;
//! 4. [`FairQueue::finish`] each request with the tokens the provider reported.
//!
//! **The order.** Every agent has a counter: the service it has been charged, `(charge.input ×
//! input tokens + charge.output × output tokens) / weight`. Each provider starts the request of the
//! agent with the smallest counter among those waiting for it, if the provider's caps ([`Admission`])
//! let it start now; otherwise that provider waits (so a large request cannot be starved by small
//! ones) while the others go on. An agent is charged its estimate when its request starts, and the
//! difference to the actual usage when it finishes. An agent that starts waiting after waiting
//! nowhere is lifted to the *floor* (the smallest counter among waiting agents, or the counter of the
//! last to stop waiting), so idling banks no credit; a refund stops at the floor for the same reason.
//!
//! **The bound.** For agents sharing one provider: let `C` be the largest charge of one request,
//! estimate or actual, divided by its agent's weight; `U` the largest amount by which an actual
//! charge exceeded its estimate (0 when estimates are exact or high); `K` the most requests one agent
//! had running at once. Then at every instant the counters of two waiting agents differ by at most
//! `C + (K − 1)·U`, so over any interval in which both keep waiting their weighted service differs by
//! at most twice that: VTC's `2C` when each agent runs one request at a time or estimates exactly.
//! Why: the floor never falls, and no waiting counter is below it. An agent starts a request only at
//! the floor and is charged its estimate; add the underestimates of its running requests, which
//! finishing turns into charges, and its counter can reach at most floor `+ C + (K − 1)·U`; a lift
//! lands on the floor. `core/tests/fairness.rs` checks this on simulated traces. With several
//! providers one counter counts an agent's service on all of them.

mod admission;
mod quota;
mod vtc;

#[cfg(test)]
mod tests;

pub use admission::{Admission, WINDOW_MS};
pub use vtc::Charge;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;
use core::num::NonZeroU32;

use crate::policy::LlmQuota;

use admission::Gate;
use quota::QuotaUse;
use vtc::FairOrder;

/// A provider of completions (a model endpoint), numbered by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderId(pub u32);

/// A submitted request, from submit until it is finished or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Input and output tokens of one request: an estimate at submit, the provider's count at finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl Tokens {
    pub fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// A request that may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch<T> {
    pub ticket: Ticket,
    pub agent: u64,
    pub provider: ProviderId,
    pub item: T,
}

/// What one agent has had from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentStats {
    pub waiting: u64,
    pub running: u64,
    /// Requests started, and the sum of their waits from submit to start.
    pub started: u64,
    pub total_wait_ms: u64,
    /// Requests finished, the sum of their times from submit to finish, and the tokens they used.
    pub finished: u64,
    pub total_turnaround_ms: u64,
    pub used: Tokens,
}

/// Why the queue refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FairError {
    #[error("provider {0} is not configured")]
    UnknownProvider(ProviderId),
    #[error("provider {provider} can never admit a request of {tokens} tokens")]
    NeverAdmitted { provider: ProviderId, tokens: u64 },
    #[error("agent {agent} has used all {max_calls} of its llm calls")]
    CallQuota { agent: u64, max_calls: u64 },
    #[error(
        "agent {agent} asked for {requested} llm tokens with {committed} used or reserved, \
         over its quota of {max_tokens}"
    )]
    TokenQuota { agent: u64, committed: u64, requested: u64, max_tokens: u64 },
    #[error("no waiting request has ticket {0}")]
    NotWaiting(Ticket),
    #[error("no running request has ticket {0}")]
    NotRunning(Ticket),
}

#[derive(Debug, Clone)]
struct Waiting<T> {
    ticket: Ticket,
    estimate: Tokens,
    submitted_ms: u64,
    item: T,
}

#[derive(Debug, Clone)]
struct Running {
    agent: u64,
    provider: ProviderId,
    estimate: Tokens,
    /// Counter units charged at start, replaced by the actual charge at finish.
    charged: u128,
    submitted_ms: u64,
    started_ms: u64,
}

#[derive(Debug, Clone)]
struct Agent<T> {
    quota: QuotaUse,
    /// Per provider, oldest first.
    waiting: BTreeMap<ProviderId, VecDeque<Waiting<T>>>,
    stats: AgentStats,
}

impl<T> Default for Agent<T> {
    fn default() -> Self {
        Agent { quota: QuotaUse::default(), waiting: BTreeMap::new(), stats: AgentStats::default() }
    }
}

/// The queue; `T` is what the runtime keeps with a request until it starts (the THINK payload).
#[derive(Debug, Clone)]
pub struct FairQueue<T> {
    charge: Charge,
    order: FairOrder,
    agents: BTreeMap<u64, Agent<T>>,
    providers: BTreeMap<ProviderId, Gate>,
    waiting: BTreeMap<Ticket, (u64, ProviderId)>,
    running: BTreeMap<Ticket, Running>,
    next_ticket: u64,
}

impl<T> FairQueue<T> {
    pub fn new(charge: Charge) -> Self {
        FairQueue {
            charge,
            order: FairOrder::default(),
            agents: BTreeMap::new(),
            providers: BTreeMap::new(),
            waiting: BTreeMap::new(),
            running: BTreeMap::new(),
            next_ticket: 1,
        }
    }

    /// Adds a provider or changes its caps; what it counts (running requests, the windows) is kept.
    pub fn set_provider(&mut self, provider: ProviderId, caps: Admission) {
        self.providers.entry(provider).or_default().set_caps(caps);
    }

    /// An agent's share: with weight 2 it is served twice as much as an agent of weight 1 (the default).
    pub fn set_weight(&mut self, agent: u64, weight: NonZeroU32) {
        self.order.set_weight(agent, weight);
    }

    /// An agent's quota; what it has already used still counts.
    pub fn set_quota(&mut self, agent: u64, quota: LlmQuota) {
        self.agents.entry(agent).or_default().quota.quota = quota;
    }

    /// Queues a request of `agent` for `provider`. `estimate` is charged when it starts, to the agent's
    /// counter, its token quota and the provider's tokens per minute, until `finish` gives the usage.
    pub fn submit(
        &mut self,
        now_ms: u64,
        agent: u64,
        provider: ProviderId,
        estimate: Tokens,
        item: T,
    ) -> Result<Ticket, FairError> {
        let gate = self.providers.get(&provider).ok_or(FairError::UnknownProvider(provider))?;
        if !gate.can_ever_admit(estimate.total()) {
            return Err(FairError::NeverAdmitted { provider, tokens: estimate.total() });
        }
        let state = self.agents.entry(agent).or_default();
        state.quota.reserve(agent, estimate.total())?;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        state.waiting.entry(provider).or_default().push_back(Waiting { ticket, estimate, submitted_ms: now_ms, item });
        state.stats.waiting += 1;
        self.waiting.insert(ticket, (agent, provider));
        self.order.wait(agent, provider);
        Ok(ticket)
    }

    /// The next request to start now: of the providers whose first waiting agent (smallest counter)
    /// may start its oldest request, the one whose agent has the smallest counter.
    pub fn next(&mut self, now_ms: u64) -> Option<Dispatch<T>> {
        let (_, agent, provider) = self
            .providers
            .iter()
            .filter_map(|(&provider, gate)| {
                let (units, agent) = self.order.first(provider)?;
                let head = self.head(agent, provider)?;
                gate.admits(now_ms, head.estimate.total()).then_some((units, agent, provider))
            })
            .min()?;
        let gate = self.providers.get_mut(&provider)?;
        let state = self.agents.get_mut(&agent)?;
        let queue = state.waiting.get_mut(&provider)?;
        let request = queue.pop_front()?;
        if queue.is_empty() {
            state.waiting.remove(&provider);
            // Before the charge, so a floor remembered now is the counter this agent was picked at.
            self.order.stop_waiting(agent, provider);
        }
        let charged = self.order.charge(agent, self.charge.cost(request.estimate));
        gate.start(now_ms, request.ticket, request.estimate.total());
        state.stats.waiting -= 1;
        state.stats.running += 1;
        state.stats.started += 1;
        state.stats.total_wait_ms += now_ms.saturating_sub(request.submitted_ms);
        self.waiting.remove(&request.ticket);
        let estimate = request.estimate;
        let running =
            Running { agent, provider, estimate, charged, submitted_ms: request.submitted_ms, started_ms: now_ms };
        self.running.insert(request.ticket, running);
        Some(Dispatch { ticket: request.ticket, agent, provider, item: request.item })
    }

    /// When to call [`next`](Self::next) again if nothing is submitted or finished before: `now_ms`
    /// if a request may start now, the time a rate window lets one start, or `None` when only a
    /// submit or a finish can change anything.
    pub fn next_wakeup(&self, now_ms: u64) -> Option<u64> {
        self.providers
            .iter()
            .filter_map(|(&provider, gate)| {
                let (_, agent) = self.order.first(provider)?;
                gate.opens_at(now_ms, self.head(agent, provider)?.estimate.total())
            })
            .min()
    }

    /// A started request ended with `used` tokens (zero if it failed before any): its provider slot is
    /// freed and its agent is charged the actual usage instead of the estimate.
    pub fn finish(&mut self, now_ms: u64, ticket: Ticket, used: Tokens) -> Result<(), FairError> {
        let run = self.running.remove(&ticket).ok_or(FairError::NotRunning(ticket))?;
        if let Some(gate) = self.providers.get_mut(&run.provider) {
            gate.finish(ticket, run.started_ms, used.total());
        }
        // The agent is gone if it was removed while its request ran.
        if let Some(state) = self.agents.get_mut(&run.agent) {
            state.quota.settle(run.estimate.total(), used.total());
            let stats = &mut state.stats;
            stats.running -= 1;
            stats.finished += 1;
            stats.total_turnaround_ms += now_ms.saturating_sub(run.submitted_ms);
            stats.used.input = stats.used.input.saturating_add(used.input);
            stats.used.output = stats.used.output.saturating_add(used.output);
            self.order.correct(run.agent, run.charged, self.charge.cost(used));
        }
        Ok(())
    }

    /// Takes back a request that has not started; its call and tokens return to the agent's quota.
    pub fn cancel(&mut self, ticket: Ticket) -> Result<T, FairError> {
        let not_waiting = || FairError::NotWaiting(ticket);
        let (agent, provider) = self.waiting.remove(&ticket).ok_or_else(not_waiting)?;
        let state = self.agents.get_mut(&agent).ok_or_else(not_waiting)?;
        let queue = state.waiting.get_mut(&provider).ok_or_else(not_waiting)?;
        let index = queue.iter().position(|w| w.ticket == ticket).ok_or_else(not_waiting)?;
        let request = queue.remove(index).ok_or_else(not_waiting)?;
        if queue.is_empty() {
            state.waiting.remove(&provider);
            self.order.stop_waiting(agent, provider);
        }
        state.quota.release(request.estimate.total());
        state.stats.waiting -= 1;
        Ok(request.item)
    }

    /// Forgets an agent that ended and hands back its waiting requests. Its running requests keep
    /// their provider slots until they are finished.
    pub fn remove_agent(&mut self, agent: u64) -> Vec<T> {
        self.order.remove(agent);
        let Some(state) = self.agents.remove(&agent) else { return Vec::new() };
        let requests = state.waiting.into_values().flatten();
        requests
            .map(|request| {
                self.waiting.remove(&request.ticket);
                request.item
            })
            .collect()
    }

    pub fn stats(&self, agent: u64) -> Option<AgentStats> {
        self.agents.get(&agent).map(|state| state.stats)
    }

    fn head(&self, agent: u64, provider: ProviderId) -> Option<&Waiting<T>> {
        self.agents.get(&agent)?.waiting.get(&provider)?.front()
    }
}
