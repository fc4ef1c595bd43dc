use super::*;
use alloc::vec;

const P: ProviderId = ProviderId(0);
const Q: ProviderId = ProviderId(1);

fn tokens(input: u64, output: u64) -> Tokens {
    Tokens { input, output }
}

fn queue(caps: Admission) -> FairQueue<u32> {
    let mut q = FairQueue::new(Charge::default());
    q.set_provider(P, caps);
    q
}

fn agents_in_order(q: &mut FairQueue<u32>, now_ms: u64) -> Vec<u64> {
    core::iter::from_fn(|| q.next(now_ms)).map(|d| d.agent).collect()
}

#[test]
fn unknown_and_impossible_requests_are_refused() {
    let mut q = queue(Admission { tokens_per_min: Some(1_000), ..Admission::default() });
    assert_eq!(q.submit(0, 1, Q, tokens(1, 0), 0), Err(FairError::UnknownProvider(Q)));
    let too_big = q.submit(0, 1, P, tokens(900, 101), 0);
    assert_eq!(too_big, Err(FairError::NeverAdmitted { provider: P, tokens: 1_001 }));
    assert_eq!(too_big.unwrap_err().to_string(), "provider 0 can never admit a request of 1001 tokens");
    assert!(q.submit(0, 1, P, tokens(900, 100), 0).is_ok());
}

#[test]
fn call_quota_counts_submits_and_cancels_give_calls_back() {
    let mut q = queue(Admission::default());
    q.set_quota(7, LlmQuota { max_tokens: None, max_calls: Some(2) });
    let first = q.submit(0, 7, P, tokens(1, 0), 1).unwrap();
    q.submit(0, 7, P, tokens(1, 0), 2).unwrap();
    let refused = q.submit(0, 7, P, tokens(1, 0), 3);
    assert_eq!(refused, Err(FairError::CallQuota { agent: 7, max_calls: 2 }));
    assert_eq!(refused.unwrap_err().to_string(), "agent 7 has used all 2 of its llm calls");
    assert_eq!(q.cancel(first), Ok(1));
    assert!(q.submit(0, 7, P, tokens(1, 0), 3).is_ok());
    assert!(q.submit(0, 8, P, tokens(1, 0), 4).is_ok(), "quotas are per agent");
}

#[test]
fn token_quota_reserves_estimates_and_a_finish_over_it_stops_the_next_submit() {
    let mut q = queue(Admission::default());
    q.set_quota(7, LlmQuota { max_tokens: Some(1_000), max_calls: None });
    q.submit(0, 7, P, tokens(500, 100), 1).unwrap();
    let refused = q.submit(0, 7, P, tokens(400, 1), 2);
    assert_eq!(refused, Err(FairError::TokenQuota { agent: 7, committed: 600, requested: 401, max_tokens: 1_000 }));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "agent 7 asked for 401 llm tokens with 600 used or reserved, over its quota of 1000"
    );
    q.submit(0, 7, P, tokens(400, 0), 2).unwrap();
    let started = q.next(0).unwrap();
    // The completion used more than estimated and takes the agent past its quota.
    q.finish(1, started.ticket, tokens(500, 600)).unwrap();
    let refused = q.submit(2, 7, P, tokens(0, 0), 3);
    assert_eq!(refused, Err(FairError::TokenQuota { agent: 7, committed: 1_500, requested: 0, max_tokens: 1_000 }));
}

#[test]
fn tickets_are_checked_for_their_state() {
    let mut q = queue(Admission::default());
    let a = q.submit(0, 1, P, tokens(1, 0), 10).unwrap();
    let b = q.submit(0, 1, P, tokens(1, 0), 11).unwrap();
    assert_eq!(q.finish(0, b, tokens(1, 0)), Err(FairError::NotRunning(b)));
    let started = q.next(0).unwrap();
    assert_eq!((started.ticket, started.item), (a, 10));
    assert_eq!(q.cancel(a), Err(FairError::NotWaiting(a)));
    assert_eq!(q.cancel(b), Ok(11));
    assert_eq!(q.cancel(b), Err(FairError::NotWaiting(b)));
    assert!(q.finish(1, a, tokens(1, 1)).is_ok());
    assert_eq!(q.finish(1, a, tokens(1, 1)), Err(FairError::NotRunning(a)));
}

#[test]
fn a_removed_agent_hands_back_its_requests_and_its_running_one_still_frees_the_slot() {
    let mut q = queue(Admission { max_concurrent: Some(1), ..Admission::default() });
    q.submit(0, 1, P, tokens(1, 0), 10).unwrap();
    q.submit(0, 1, P, tokens(1, 0), 11).unwrap();
    q.submit(0, 2, P, tokens(1, 0), 20).unwrap();
    let running = q.next(0).unwrap();
    assert_eq!(running.agent, 1);
    assert_eq!(q.remove_agent(1), vec![11]);
    assert_eq!(q.stats(1), None);
    assert_eq!(q.next(0), None, "the removed agent's running request holds the only slot");
    q.finish(5, running.ticket, tokens(1, 1)).unwrap();
    assert_eq!(q.next(5).map(|d| d.item), Some(20));
}

#[test]
fn stats_count_waits_turnarounds_and_usage() {
    let mut q = queue(Admission { max_concurrent: Some(1), ..Admission::default() });
    q.submit(0, 1, P, tokens(10, 0), 0).unwrap();
    q.submit(0, 1, P, tokens(10, 0), 0).unwrap();
    let first = q.next(5).unwrap();
    q.finish(15, first.ticket, tokens(12, 30)).unwrap();
    let second = q.next(20).unwrap();
    let stats = q.stats(1).unwrap();
    let expected = AgentStats {
        waiting: 0,
        running: 1,
        started: 2,
        total_wait_ms: 5 + 20,
        finished: 1,
        total_turnaround_ms: 15,
        used: tokens(12, 30),
    };
    assert_eq!(stats, expected);
    q.finish(30, second.ticket, tokens(0, 0)).unwrap();
    assert_eq!(q.stats(1).unwrap().total_turnaround_ms, 15 + 30);
}

#[test]
fn the_smallest_counter_goes_first_and_weights_divide_the_charge() {
    let mut q = queue(Admission::default());
    q.set_weight(2, NonZeroU32::new(2).unwrap());
    for agent in [1, 2] {
        for _ in 0..4 {
            q.submit(0, agent, P, tokens(100, 0), 0).unwrap();
        }
    }
    // Agent 1 pays 100 a request, agent 2 pays 50: two of agent 2's for each of agent 1's.
    assert_eq!(agents_in_order(&mut q, 0), [1, 2, 2, 1, 2, 2, 1, 1]);
}

#[test]
fn a_capped_provider_does_not_hold_up_another() {
    let mut q = queue(Admission { max_concurrent: Some(1), ..Admission::default() });
    q.set_provider(Q, Admission::default());
    q.submit(0, 1, P, tokens(1, 0), 0).unwrap();
    q.submit(0, 1, P, tokens(1, 0), 0).unwrap();
    q.submit(0, 2, P, tokens(1, 0), 0).unwrap();
    q.submit(0, 3, Q, tokens(100, 0), 0).unwrap();
    let order: Vec<_> = core::iter::from_fn(|| q.next(0)).map(|d| (d.agent, d.provider)).collect();
    assert_eq!(order, [(1, P), (3, Q)]);
    assert_eq!(q.next_wakeup(0), None, "only a finish can open P");
}

#[test]
fn an_agent_waiting_on_two_providers_is_charged_once_for_both() {
    let mut q = queue(Admission::default());
    q.set_provider(Q, Admission::default());
    q.submit(0, 1, P, tokens(100, 0), 0).unwrap();
    q.submit(0, 1, Q, tokens(100, 0), 0).unwrap();
    q.submit(0, 2, Q, tokens(100, 0), 0).unwrap();
    q.submit(0, 2, Q, tokens(100, 0), 0).unwrap();
    // Agent 1 starts on P first (ties go to the smaller provider), so agent 2 comes before it on Q.
    let order: Vec<_> = core::iter::from_fn(|| q.next(0)).map(|d| (d.agent, d.provider)).collect();
    assert_eq!(order, [(1, P), (2, Q), (1, Q), (2, Q)]);
}

/// A small xorshift generator: the simulations below must be the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The counters themselves, read inside the queue: with requests finishing in random order and
/// output tokens unknown at submit, two waiting counters never differ by more than `C + (K − 1)·U`.
#[test]
fn waiting_counters_stay_within_the_bound() {
    const MAX_INPUT: u64 = 400;
    const MAX_OUTPUT: u64 = 300;
    const SLOTS: u32 = 3;
    let charge = Charge::default();
    let mut q: FairQueue<u64> = FairQueue::new(charge);
    q.set_provider(P, Admission { max_concurrent: Some(SLOTS), ..Admission::default() });
    let weights = [1, 1, 2, 3];
    for (agent, weight) in (0u64..).zip(weights) {
        q.set_weight(agent, NonZeroU32::new(weight).unwrap());
    }
    let unit = |cost: u128| cost * 720_720;
    // Every request's estimate and actual charge are at most C; an actual exceeds its estimate by at most U.
    let c = unit(charge.cost(tokens(MAX_INPUT, MAX_OUTPUT)));
    let u = unit(charge.cost(tokens(0, MAX_OUTPUT)));
    let bound = c + (u128::from(SLOTS) - 1) * u;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut running = Vec::new();
    let mut widest = 0;
    for now in 0..5_000 {
        for agent in 0..weights.len() as u64 {
            while q.stats(agent).is_none_or(|s| s.waiting < 4) {
                let input = 1 + rng.below(MAX_INPUT);
                q.submit(now, agent, P, tokens(input, 0), input).unwrap();
            }
        }
        while let Some(started) = q.next(now) {
            running.push((started.ticket, started.item));
        }
        let counters: Vec<u128> = (0..weights.len() as u64).filter_map(|a| q.order.units(a)).collect();
        let spread = counters.iter().max().unwrap() - counters.iter().min().unwrap();
        assert!(spread <= bound, "at {now}: spread {spread} > bound {bound}");
        widest = widest.max(spread);
        let (ticket, input) = running.swap_remove(rng.below(running.len() as u64) as usize);
        q.finish(now, ticket, tokens(input, rng.below(MAX_OUTPUT + 1))).unwrap();
    }
    assert!(widest > c, "the trace never tested more than one request's worth of spread");
}
