//! `clove-bench --fair`: the fair LLM queue (`clove_core::fair`, VTC order) beside FIFO on the same
//! workload. It is a discrete-event **simulation** on the queue's injected clock: no provider, no
//! threads, no sleeping; the queue code is the real one.
//!
//! Ten agents share one fake provider with four slots and a fixed service rate (prefill 5 000 tokens/s,
//! decoding 50 tokens/s per slot). Nine light agents run one THINK at a time; the greedy agent runs
//! ten at once, so it sends ten times the requests of any other. Every agent submits its next
//! request as soon as one finishes, so all ten always have one outstanding. The estimate at submit
//! is the input only (a THINK's output length is unknown); the output is charged at finish. FIFO is
//! the same queue with every request under one agent, so both columns share caps and code paths.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use clove_core::fair::{Admission, Charge, FairQueue, ProviderId, Ticket, Tokens};

use crate::Result;

const AGENTS: usize = 10;
const GREEDY: usize = 0;
const GREEDY_OUTSTANDING: usize = 10;
const SLOTS: u32 = 4;
const PROVIDER: ProviderId = ProviderId(0);
/// Targets (the fair-queue brief): Jain's index of VTC at least 0.99, the provider busy 95% of the time.
const JAIN_MIN: f64 = 0.99;
const UTILISATION_MIN: f64 = 0.95;

const USAGE: &str = "usage: clove-bench --fair [--minutes N] [--seed N]

  --minutes N   simulated minutes per run (default 120)
  --seed N      seed of the request sizes (default 1)";

pub struct Options {
    pub minutes: u64,
    pub seed: u64,
}

pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options { minutes: 120, seed: 1 };
    for (flag, value) in crate::flag_values(args.filter(|a| a != "--fair"), USAGE)? {
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--minutes" => options.minutes = number()?.max(1),
            "--seed" => options.seed = number()?.max(1),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    Ok(options)
}

/// How long the fake provider works on one request in one slot.
fn service_ms(t: Tokens) -> u64 {
    t.input / 5 + t.output * 20
}

/// VTC's charge, computed here for the report: 1× input + 2× output tokens.
fn cost(t: Tokens) -> f64 {
    t.input as f64 + 2.0 * t.output as f64
}

struct Rng(u64);

impl Rng {
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low + 1)
    }

    fn request(&mut self) -> Tokens {
        Tokens { input: self.between(200, 4_000), output: self.between(50, 600) }
    }
}

struct Request {
    agent: usize,
    actual: Tokens,
    submitted_ms: u64,
}

#[derive(Default, Clone, Copy)]
struct AgentOutcome {
    service: f64,
    started: u64,
    total_wait_ms: u64,
    finished: u64,
    total_turnaround_ms: u64,
}

pub struct Outcome {
    agents: [AgentOutcome; AGENTS],
    busy_ms: u64,
}

pub struct Results {
    pub minutes: u64,
    pub vtc: Outcome,
    pub fifo: Outcome,
}

pub fn run(options: &Options) -> Result<Results> {
    let end_ms = options.minutes * 60_000;
    let vtc = simulate(false, end_ms, options.seed)?;
    Ok(Results { minutes: options.minutes, vtc, fifo: simulate(true, end_ms, options.seed)? })
}

fn simulate(fifo: bool, end_ms: u64, seed: u64) -> Result<Outcome> {
    let mut queue = FairQueue::new(Charge::default());
    queue.set_provider(PROVIDER, Admission { max_concurrent: Some(SLOTS), ..Admission::default() });
    let mut rng = Rng(seed);
    let mut outcome = Outcome { agents: [AgentOutcome::default(); AGENTS], busy_ms: 0 };
    let mut submit = |queue: &mut FairQueue<Request>, now_ms: u64, agent: usize| {
        let actual = rng.request();
        let estimate = Tokens { input: actual.input, output: 0 };
        let queue_agent = if fifo { 0 } else { agent as u64 };
        let request = Request { agent, actual, submitted_ms: now_ms };
        queue.submit(now_ms, queue_agent, PROVIDER, estimate, request).map(drop)
    };
    for agent in 0..AGENTS {
        for _ in 0..if agent == GREEDY { GREEDY_OUTSTANDING } else { 1 } {
            submit(&mut queue, 0, agent)?;
        }
    }
    let mut finishes: BinaryHeap<Reverse<(u64, Ticket)>> = BinaryHeap::new();
    let mut running = BTreeMap::new();
    let mut now_ms = 0;
    loop {
        while let Some(dispatch) = queue.next(now_ms) {
            let request = dispatch.item;
            let took = service_ms(request.actual);
            let agent = &mut outcome.agents[request.agent];
            agent.started += 1;
            agent.total_wait_ms += now_ms - request.submitted_ms;
            outcome.busy_ms += took.min(end_ms - now_ms);
            finishes.push(Reverse((now_ms + took, dispatch.ticket)));
            running.insert(dispatch.ticket, request);
        }
        let Some(Reverse((at_ms, ticket))) = finishes.pop() else { break };
        if at_ms > end_ms {
            break;
        }
        now_ms = at_ms;
        let Some(request) = running.remove(&ticket) else { break };
        queue.finish(now_ms, ticket, request.actual)?;
        let agent = &mut outcome.agents[request.agent];
        agent.service += cost(request.actual);
        agent.finished += 1;
        agent.total_turnaround_ms += now_ms - request.submitted_ms;
        submit(&mut queue, now_ms, request.agent)?;
    }
    Ok(outcome)
}

fn jain(outcome: &Outcome) -> f64 {
    let services = outcome.agents.map(|a| a.service);
    let sum: f64 = services.iter().sum();
    sum * sum / (AGENTS as f64 * services.iter().map(|s| s * s).sum::<f64>())
}

/// Mean wait and turnaround in seconds, and requests finished, of the greedy agent or the light ones.
fn class(outcome: &Outcome, greedy: bool) -> (f64, f64, u64) {
    let members = outcome.agents.iter().enumerate().filter(|(i, _)| (*i == GREEDY) == greedy).map(|(_, a)| a);
    let sum = |field: fn(&AgentOutcome) -> u64| members.clone().map(field).sum::<u64>();
    let mean_s = |total: u64, count: u64| total as f64 / 1_000.0 / count.max(1) as f64;
    let finished = sum(|a| a.finished);
    (mean_s(sum(|a| a.total_wait_ms), sum(|a| a.started)), mean_s(sum(|a| a.total_turnaround_ms), finished), finished)
}

pub fn render(r: &Results) -> String {
    let utilisation = |o: &Outcome| o.busy_ms as f64 / (f64::from(SLOTS) * r.minutes as f64 * 60_000.0);
    let share = |o: &Outcome| o.agents[GREEDY].service / o.agents.iter().map(|a| a.service).sum::<f64>();
    let [vtc, fifo] = [&r.vtc, &r.fifo];
    let (vtc_light, fifo_light, vtc_greedy, fifo_greedy) =
        (class(vtc, false), class(fifo, false), class(vtc, true), class(fifo, true));
    let verdict = |met: bool| if met { "(met)" } else { "(missed)" };
    let rows = [
        [
            "Jain's index, service of the 10 agents".into(),
            format!("{:.5}", jain(vtc)),
            format!("{:.5}", jain(fifo)),
            format!("VTC ≥ {JAIN_MIN} {}", verdict(jain(vtc) >= JAIN_MIN)),
        ],
        [
            "greedy agent's share of the service".into(),
            format!("{:.1}%", 100.0 * share(vtc)),
            format!("{:.1}%", 100.0 * share(fifo)),
            "fair: 10%".into(),
        ],
        [
            "provider utilisation".into(),
            format!("{:.1}%", 100.0 * utilisation(vtc)),
            format!("{:.1}%", 100.0 * utilisation(fifo)),
            format!(
                "≥ {:.0}% {}",
                100.0 * UTILISATION_MIN,
                verdict(utilisation(vtc).min(utilisation(fifo)) >= UTILISATION_MIN)
            ),
        ],
        ["mean wait, light agents".into(), seconds(vtc_light.0), seconds(fifo_light.0), "—".into()],
        ["mean wait, greedy agent".into(), seconds(vtc_greedy.0), seconds(fifo_greedy.0), "—".into()],
        ["mean turnaround, light agents".into(), seconds(vtc_light.1), seconds(fifo_light.1), "—".into()],
        ["mean turnaround, greedy agent".into(), seconds(vtc_greedy.1), seconds(fifo_greedy.1), "—".into()],
        [
            "requests finished, light agents / greedy".into(),
            format!("{} / {}", vtc_light.2, vtc_greedy.2),
            format!("{} / {}", fifo_light.2, fifo_greedy.2),
            "—".into(),
        ],
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Fair LLM queue (VTC) vs FIFO — simulation, {} simulated minutes: 10 agents, one with 10× the \
         requests outstanding, one provider with {SLOTS} slots\n",
        r.minutes
    );
    let _ = writeln!(out, "| measure | VTC | FIFO | target |");
    let _ = writeln!(out, "|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

fn seconds(s: f64) -> String {
    format!("{s:.1} s")
}
