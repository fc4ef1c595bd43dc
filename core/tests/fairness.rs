//! Deterministic simulations of the fair LLM queue (`clove_core::fair`) on an injected clock, through
//! its public API: the fairness bound, weights, an agent back from idling, a greedy agent next to
//! FIFO, admission caps, quotas and work conservation.
//!
//! Every simulation also checks, at every step, that the provider's caps hold at each start, that
//! `next_wakeup` is exact (a clone asked one millisecond earlier starts nothing; asked then, the queue
//! starts something) and, without a token cap, that a free slot never sits next to a waiting request.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

use clove_core::fair::{Admission, Charge, FairError, FairQueue, ProviderId, Ticket, Tokens, WINDOW_MS};
use clove_core::policy::LlmQuota;

const P: ProviderId = ProviderId(0);

/// The service of a request in tokens, computed here rather than by the queue: VTC's 1× input + 2× output.
fn cost(t: Tokens) -> f64 {
    t.input as f64 + 2.0 * t.output as f64
}

/// The simulated provider runs one request for this long.
fn service_ms(t: Tokens) -> u64 {
    1 + t.input / 10 + t.output
}

fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    sum * sum / (xs.len() as f64 * xs.iter().map(|x| x * x).sum::<f64>())
}

struct Rng(u64);

impl Rng {
    fn pick(&mut self, range: &RangeInclusive<u64>) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        range.start() + self.0 % (range.end() - range.start() + 1)
    }
}

/// What one simulated agent does: keeps `outstanding` requests submitted and unfinished, submitting
/// the next one a think time after each finish, and nothing during `pause`.
#[derive(Clone)]
struct Plan {
    weight: u32,
    outstanding: usize,
    think_ms: RangeInclusive<u64>,
    input: RangeInclusive<u64>,
    output: RangeInclusive<u64>,
    pause: Option<(u64, u64)>,
}

impl Plan {
    fn busy(input: RangeInclusive<u64>, output: RangeInclusive<u64>) -> Plan {
        Plan { weight: 1, outstanding: 20, think_ms: 0..=0, input, output, pause: None }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Estimate {
    /// The runtime knows both counts in advance.
    Exact,
    /// It knows the prompt; the output is charged when the request finishes.
    InputOnly,
}

struct Setup {
    plans: Vec<Plan>,
    caps: Admission,
    estimate: Estimate,
    /// Every request under one agent id: the same queue, in plain arrival order.
    fifo: bool,
    until_ms: u64,
    seed: u64,
}

#[derive(Clone, Debug)]
struct Request {
    agent: usize,
    estimate: Tokens,
    actual: Tokens,
}

#[derive(Clone, Default)]
struct AgentState {
    /// Weighted service: estimates when requests start, the rest when they finish.
    service: f64,
    waiting: usize,
    running: usize,
    most_running: usize,
    started: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Submit(usize),
    Finish(Ticket),
}

struct Sim {
    now: u64,
    agents: Vec<AgentState>,
    /// The largest charge of a request (estimate or actual) and underestimate, over its agent's weight.
    largest_charge: f64,
    largest_underestimate: f64,
    busy_ms: u64,
    /// Steps reached because `next_wakeup` asked for them and nothing else happened then.
    timer_steps: usize,
    /// Starts inside the rate window when the caps count them: (time, ticket, tokens counted), the
    /// tokens updated at finish.
    window: Vec<(u64, Ticket, u64)>,
}

impl Sim {
    fn services(&self) -> Vec<f64> {
        self.agents.iter().map(|a| a.service).collect()
    }

    /// `C + (K − 1)·U` for what this run started: the bound on two waiting counters' difference.
    fn bound(&self) -> f64 {
        let most_running = self.agents.iter().map(|a| a.most_running).max().unwrap_or(1);
        self.largest_charge + (most_running as f64 - 1.0) * self.largest_underestimate
    }
}

fn simulate(setup: &Setup, mut observe: impl FnMut(&Sim)) -> Sim {
    let mut queue: FairQueue<Request> = FairQueue::new(Charge::default());
    queue.set_provider(P, setup.caps);
    let queue_agent = |agent: usize| if setup.fifo { 0 } else { agent as u64 };
    if !setup.fifo {
        for (agent, plan) in setup.plans.iter().enumerate() {
            queue.set_weight(queue_agent(agent), NonZeroU32::new(plan.weight).unwrap());
        }
    }
    let mut rng = Rng(setup.seed);
    let mut sim = Sim {
        now: 0,
        agents: vec![AgentState::default(); setup.plans.len()],
        largest_charge: 0.0,
        largest_underestimate: 0.0,
        busy_ms: 0,
        timer_steps: 0,
        window: Vec::new(),
    };
    let mut events = BinaryHeap::new();
    for (agent, plan) in setup.plans.iter().enumerate() {
        events.extend((0..plan.outstanding).map(|_| Reverse((0, Event::Submit(agent)))));
    }
    let mut running = BTreeMap::new();
    let mut wakeup = None;
    let caps_count_rates = setup.caps.requests_per_min.is_some() || setup.caps.tokens_per_min.is_some();
    loop {
        let next_event = events.peek().map(|Reverse((at, _))| *at);
        let Some(now) = next_event.into_iter().chain(wakeup).min() else { break };
        if now > setup.until_ms {
            break;
        }
        let woken_alone = wakeup == Some(now) && next_event.is_none_or(|at| at > now);
        sim.now = now;
        sim.timer_steps += usize::from(woken_alone);
        while events.peek().is_some_and(|Reverse((at, _))| *at == now) {
            let Some(Reverse((_, event))) = events.pop() else { break };
            match event {
                Event::Submit(agent) => {
                    let plan = &setup.plans[agent];
                    let actual = Tokens { input: rng.pick(&plan.input), output: rng.pick(&plan.output) };
                    let estimate = match setup.estimate {
                        Estimate::Exact => actual,
                        Estimate::InputOnly => Tokens { input: actual.input, output: 0 },
                    };
                    let request = Request { agent, estimate, actual };
                    queue.submit(now, queue_agent(agent), P, estimate, request).unwrap();
                    sim.agents[agent].waiting += 1;
                }
                Event::Finish(ticket) => {
                    let request: Request = running.remove(&ticket).unwrap();
                    queue.finish(now, ticket, request.actual).unwrap();
                    let weight = f64::from(setup.plans[request.agent].weight);
                    let state = &mut sim.agents[request.agent];
                    state.service += (cost(request.actual) - cost(request.estimate)) / weight;
                    state.running -= 1;
                    if let Some(started) = sim.window.iter_mut().find(|s| s.1 == ticket) {
                        started.2 = request.actual.total();
                    }
                    let plan = &setup.plans[request.agent];
                    let mut again = now + rng.pick(&plan.think_ms);
                    if let Some((_, to)) = plan.pause.filter(|&(from, to)| (from..to).contains(&again)) {
                        again = to;
                    }
                    events.push(Reverse((again, Event::Submit(request.agent))));
                }
            }
        }
        let mut started_any = false;
        while let Some(dispatch) = queue.next(now) {
            check_caps(&sim, setup.caps, &dispatch.item);
            let request = dispatch.item;
            let weight = f64::from(setup.plans[request.agent].weight);
            let state = &mut sim.agents[request.agent];
            state.service += cost(request.estimate) / weight;
            state.waiting -= 1;
            state.running += 1;
            state.most_running = state.most_running.max(state.running);
            state.started += 1;
            sim.largest_charge = sim.largest_charge.max(cost(request.estimate).max(cost(request.actual)) / weight);
            let under = (cost(request.actual) - cost(request.estimate)) / weight;
            sim.largest_underestimate = sim.largest_underestimate.max(under);
            let duration = service_ms(request.actual);
            sim.busy_ms += duration.min(setup.until_ms.saturating_sub(now));
            if caps_count_rates {
                sim.window.retain(|s| s.0 + WINDOW_MS > now);
                sim.window.push((now, dispatch.ticket, request.estimate.total()));
            }
            events.push(Reverse((now + duration, Event::Finish(dispatch.ticket))));
            running.insert(dispatch.ticket, request);
            started_any = true;
        }
        assert!(started_any || !woken_alone, "at {now}: next_wakeup fired and nothing could start");
        check_work_conserving(&sim, setup.caps);
        wakeup = queue.next_wakeup(now);
        if let Some(at) = wakeup {
            assert!(at > now, "at {now}: next_wakeup says now, but next() started nothing");
            assert!(queue.clone().next(at - 1).is_none(), "at {now}: a request could start before next_wakeup {at}");
        }
        observe(&sim);
    }
    sim
}

/// The provider's caps hold for a request about to start.
fn check_caps(sim: &Sim, caps: Admission, request: &Request) {
    let now = sim.now;
    let live: Vec<_> = sim.window.iter().filter(|s| s.0 + WINDOW_MS > now).collect();
    let running: usize = sim.agents.iter().map(|a| a.running).sum();
    if let Some(cap) = caps.max_concurrent {
        assert!(running < cap as usize, "at {now}: {running} running, cap {cap}");
    }
    if let Some(cap) = caps.requests_per_min {
        assert!(live.len() < cap as usize, "at {now}: {} started in the window, cap {cap}", live.len());
    }
    if let Some(cap) = caps.tokens_per_min {
        let counted: u64 = live.iter().map(|s| s.2).sum();
        let need = request.estimate.total();
        assert!(counted + need <= cap, "at {now}: {counted} tokens in the window + {need}, cap {cap}");
    }
}

/// Without a token cap any waiting request fits a free slot and an open request window.
fn check_work_conserving(sim: &Sim, caps: Admission) {
    if caps.tokens_per_min.is_some() {
        return;
    }
    let now = sim.now;
    let waiting: usize = sim.agents.iter().map(|a| a.waiting).sum();
    let running: usize = sim.agents.iter().map(|a| a.running).sum();
    let started_in_window = sim.window.iter().filter(|s| s.0 + WINDOW_MS > now).count();
    let slot_free = caps.max_concurrent.is_none_or(|cap| running < cap as usize);
    let window_open = caps.requests_per_min.is_none_or(|cap| started_in_window < cap as usize);
    assert!(
        waiting == 0 || !slot_free || !window_open,
        "at {now}: {waiting} waiting, {running} running, {started_in_window} in the window: the provider idles"
    );
}

fn slots(n: u32) -> Admission {
    Admission { max_concurrent: Some(n), ..Admission::default() }
}

/// The largest difference in weighted service between two agents over a run in which every agent
/// has a request waiting at every step.
fn widest_gap(setup: &Setup) -> (f64, Sim) {
    let mut widest: f64 = 0.0;
    let sim = simulate(setup, |sim| {
        assert!(sim.agents.iter().all(|a| a.waiting > 0), "at {}: an agent ran out of work", sim.now);
        let services = sim.services();
        let (min, max) = services.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        widest = widest.max(max - min);
    });
    (widest, sim)
}

#[test]
fn backlogged_agents_stay_within_the_bound() {
    let equal = || vec![Plan::busy(100..=1_000, 10..=300); 10];
    let unequal =
        || (0..10u64).map(|i| Plan::busy(10 + 50 * i..=200 + 150 * i, 1 + 20 * i..=50 + 40 * i)).collect::<Vec<_>>();
    for (agents, plans) in [(2, equal()), (10, equal()), (2, unequal()), (10, unequal())] {
        for estimate in [Estimate::Exact, Estimate::InputOnly] {
            for concurrency in [1, 4] {
                let plans = plans[..agents].to_vec();
                let setup =
                    Setup { plans, caps: slots(concurrency), estimate, fifo: false, until_ms: 500_000, seed: 7 };
                let (widest, sim) = widest_gap(&setup);
                let bound = sim.bound();
                let case =
                    format!("{agents} agents, concurrency {concurrency}, exact: {}", estimate == Estimate::Exact);
                assert!(widest <= bound, "{case}: service differs by {widest} > bound {bound}");
                assert!(widest >= bound / 4.0, "{case}: gap {widest} never came near the bound {bound}");
                assert!(sim.agents.iter().all(|a| a.started > 100), "{case}: too short to mean anything");
            }
        }
    }
}

/// The same trace in plain arrival order breaks the bound at once: the test above can fail.
#[test]
fn fifo_breaks_the_bound() {
    let mut plans = vec![Plan::busy(100..=1_000, 10..=300); 2];
    plans[0].outstanding = 60;
    let setup = Setup { plans, caps: slots(1), estimate: Estimate::Exact, fifo: true, until_ms: 2_000_000, seed: 7 };
    let (widest, sim) = widest_gap(&setup);
    assert!(widest > 10.0 * sim.bound(), "FIFO gap {widest}, bound {}", sim.bound());
}

#[test]
fn weights_one_to_two_give_service_one_to_two() {
    let mut plans = vec![Plan::busy(100..=1_000, 10..=300); 2];
    plans[1].weight = 2;
    for estimate in [Estimate::Exact, Estimate::InputOnly] {
        let setup = Setup { plans: plans.clone(), caps: slots(2), estimate, fifo: false, until_ms: 3_000_000, seed: 3 };
        let (widest, sim) = widest_gap(&setup);
        assert!(widest <= sim.bound(), "weighted service differs by {widest} > {}", sim.bound());
        // Unweighted: what each was actually served.
        let [one, two] = [sim.agents[0].service, sim.agents[1].service * 2.0];
        let ratio = two / one;
        assert!((1.98..=2.02).contains(&ratio), "weight 2 got {ratio:.3}× the service of weight 1");
    }
}

#[test]
fn an_agent_back_from_idling_banked_no_credit() {
    const PAUSE: (u64, u64) = (300_000, 1_200_000);
    let mut plans = vec![Plan::busy(100..=1_000, 10..=300); 3];
    plans[2].pause = Some(PAUSE);
    let setup =
        Setup { plans, caps: slots(2), estimate: Estimate::InputOnly, fifo: false, until_ms: 2_000_000, seed: 5 };
    let mut at_idle_start: Option<(u64, Vec<f64>)> = None;
    let mut at_pause_end = None;
    let mut widest_after: f64 = 0.0;
    let sim = simulate(&setup, |sim| {
        let back = &sim.agents[2];
        if back.waiting + back.running == 0 && at_idle_start.is_none() {
            at_idle_start = Some((sim.now, sim.services()));
        }
        if sim.now < PAUSE.1 {
            return;
        }
        let base: &Vec<f64> = at_pause_end.get_or_insert_with(|| sim.services());
        let gained: Vec<f64> = sim.services().iter().zip(base).map(|(s, b)| s - b).collect();
        widest_after = widest_after.max(gained[2] - gained[0].min(gained[1]));
    });
    let (idle_since, before) = at_idle_start.expect("agent 2 never went idle");
    assert!(idle_since < PAUSE.1 - 600_000, "agent 2 idled only from {idle_since}");
    // What another agent was served while it idled: its credit, if idling banked any.
    let others_during_pause = at_pause_end.unwrap()[0] - before[0];
    let bound = sim.bound();
    assert!(others_during_pause > 20.0 * bound, "the pause was too short to tell ({others_during_pause})");
    assert!(widest_after <= 2.0 * bound, "after idling, agent 2 gained {widest_after} more than another > 2×{bound}");
}

/// Ten agents: each light one runs one THINK at a time, the greedy one ten at once. All ten always
/// have a request outstanding.
fn greedy_trace(fifo: bool) -> Sim {
    let mut plans = vec![Plan { outstanding: 1, ..Plan::busy(100..=2_000, 20..=400) }; 10];
    plans[0].outstanding = 10;
    simulate(
        &Setup { plans, caps: slots(4), estimate: Estimate::InputOnly, fifo, until_ms: 3_000_000, seed: 11 },
        |_| {},
    )
}

#[test]
fn a_greedy_agent_gets_its_share_and_no_more_where_fifo_gives_it_half() {
    let vtc = greedy_trace(false);
    let fifo = greedy_trace(true);
    let [vtc_jain, fifo_jain] = [jain(&vtc.services()), jain(&fifo.services())];
    assert!(vtc_jain >= 0.99, "VTC: Jain's index {vtc_jain:.4}");
    assert!(fifo_jain < 0.5, "FIFO: Jain's index {fifo_jain:.4}");
    let share = |sim: &Sim| sim.agents[0].service / sim.services().iter().sum::<f64>();
    assert!(share(&vtc) <= 0.1 + 0.005, "VTC gave the greedy agent {:.3} of the service", share(&vtc));
    assert!(share(&fifo) > 0.4, "FIFO gave the greedy agent {:.3} of the service", share(&fifo));
    for sim in [&vtc, &fifo] {
        let utilisation = sim.busy_ms as f64 / (4.0 * 3_000_000.0);
        assert!(utilisation > 0.99, "the provider was busy {utilisation:.3} of the time");
    }
}

#[test]
fn admission_caps_hold_exactly_and_next_wakeup_is_exact() {
    let plan = Plan { outstanding: 3, think_ms: 0..=20_000, ..Plan::busy(100..=3_000, 10..=500) };
    let caps = [
        Admission { max_concurrent: Some(3), requests_per_min: Some(40), tokens_per_min: Some(30_000) },
        Admission { max_concurrent: None, requests_per_min: Some(25), tokens_per_min: None },
        Admission { max_concurrent: None, requests_per_min: None, tokens_per_min: Some(20_000) },
        Admission { max_concurrent: Some(2), requests_per_min: Some(60), tokens_per_min: None },
    ];
    for caps in caps {
        for estimate in [Estimate::Exact, Estimate::InputOnly] {
            let setup =
                Setup { plans: vec![plan.clone(); 6], caps, estimate, fifo: false, until_ms: 3_600_000, seed: 13 };
            let sim = simulate(&setup, |_| {});
            let started: u64 = sim.agents.iter().map(|a| a.started).sum();
            // Hundreds of starts were held back by a window and released by `next_wakeup`.
            assert!(
                started > 500 && sim.timer_steps > 20,
                "{caps:?}: {started} started, {} timer steps",
                sim.timer_steps
            );
        }
    }
}

#[test]
fn the_queue_is_work_conserving_with_bursts_and_idle_gaps() {
    // Long think times empty the queue now and then; bursts fill it. `simulate` checks every step.
    let plan = Plan { outstanding: 2, think_ms: 0..=3_000, ..Plan::busy(100..=1_000, 10..=300) };
    for caps in [slots(1), slots(3), Admission { requests_per_min: Some(100), ..slots(5) }] {
        let setup = Setup {
            plans: vec![plan.clone(); 5],
            caps,
            estimate: Estimate::InputOnly,
            fifo: false,
            until_ms: 1_000_000,
            seed: 17,
        };
        let (mut idle_steps, mut queued_steps) = (0, 0);
        simulate(&setup, |sim| {
            idle_steps += usize::from(sim.agents.iter().all(|a| a.waiting + a.running == 0));
            queued_steps += usize::from(sim.agents.iter().any(|a| a.waiting > 0));
        });
        assert!(idle_steps > 10 && queued_steps > 100, "{caps:?}: {idle_steps} idle, {queued_steps} queued steps");
    }
}

#[test]
fn a_capped_provider_does_not_block_another() {
    let (slow, fast) = (ProviderId(1), ProviderId(2));
    let mut queue = FairQueue::new(Charge::default());
    queue.set_provider(slow, Admission { requests_per_min: Some(1), ..Admission::default() });
    queue.set_provider(fast, slots(1));
    let small = Tokens { input: 10, output: 0 };
    for _ in 0..3 {
        queue.submit(0, 1, slow, small, "slow").unwrap();
    }
    for now in 0..3 {
        let ticket = queue.submit(now, 2, fast, Tokens { input: 1_000, output: 0 }, "fast").unwrap();
        let started = std::iter::from_fn(|| queue.next(now)).map(|d| d.item).collect::<Vec<_>>();
        // Agent 1 has the smaller counter all along; its provider's window holds its requests back.
        assert_eq!(started, if now == 0 { vec!["slow", "fast"] } else { vec!["fast"] });
        assert_eq!(queue.next_wakeup(now), Some(WINDOW_MS));
        queue.finish(now, ticket, Tokens { input: 1_000, output: 5 }).unwrap();
    }
    assert_eq!(queue.next(WINDOW_MS - 1), None);
    assert_eq!(queue.next(WINDOW_MS).map(|d| d.item), Some("slow"));
    assert_eq!(queue.next_wakeup(WINDOW_MS), Some(2 * WINDOW_MS));
}

#[test]
fn quotas_refuse_calls_and_tokens_with_a_clear_error() {
    let mut queue = FairQueue::new(Charge::default());
    queue.set_provider(P, Admission::default());
    queue.set_quota(1, LlmQuota { max_tokens: None, max_calls: Some(3) });
    let request = Tokens { input: 1_500, output: 0 };
    let mut calls = 0;
    let refusal = loop {
        match queue.submit(0, 1, P, request, ()) {
            Ok(_) => calls += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(calls, 3);
    assert_eq!(refusal.to_string(), "agent 1 has used all 3 of its llm calls");

    let mut queue = FairQueue::new(Charge::default());
    queue.set_provider(P, Admission::default());
    queue.set_quota(2, LlmQuota { max_tokens: Some(5_000), max_calls: None });
    for _ in 0..3 {
        queue.submit(0, 2, P, request, ()).unwrap();
    }
    // Estimates are reserved at submit.
    let refusal = queue.submit(0, 2, P, request, ()).unwrap_err();
    assert_eq!(refusal, FairError::TokenQuota { agent: 2, committed: 4_500, requested: 1_500, max_tokens: 5_000 });
    let started: Vec<_> = std::iter::from_fn(|| queue.next(0)).map(|d| d.ticket).collect();
    // What a finish reports replaces the estimate: 1 700 + 3 000 reserved leaves room for 300.
    queue.finish(1, started[0], Tokens { input: 1_500, output: 200 }).unwrap();
    let refusal = queue.submit(1, 2, P, Tokens { input: 301, output: 0 }, ()).unwrap_err();
    assert!(matches!(refusal, FairError::TokenQuota { committed: 4_700, requested: 301, .. }), "{refusal}");
    // Completions that go past the quota are recorded, and the next submit is refused.
    queue.finish(2, started[1], Tokens { input: 1_500, output: 0 }).unwrap();
    queue.finish(2, started[2], Tokens { input: 1_500, output: 400 }).unwrap();
    let refusal = queue.submit(3, 2, P, Tokens::default(), ()).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "agent 2 asked for 0 llm tokens with 5100 used or reserved, over its quota of 5000"
    );
}
