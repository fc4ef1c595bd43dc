//! Virtual token counters (VTC, Sheng et al., OSDI'24): each agent's counter is the service it has
//! been charged, divided by its weight; per provider, the agents waiting there, sorted by counter.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::num::NonZeroU32;

use super::{ProviderId, Tokens};

/// Counter units per token of weight-1 service: the least common multiple of 1..=16, so a charge
/// to an agent of weight up to 16 divides exactly (larger weights round down by under one unit).
const UNITS_PER_TOKEN: u128 = 720_720;

/// What a request costs, in tokens of service: `input × input tokens + output × output tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub input: u32,
    pub output: u32,
}

impl Default for Charge {
    /// VTC's weights: an output token costs twice an input token, as decoding is the dearer phase.
    fn default() -> Self {
        Charge { input: 1, output: 2 }
    }
}

impl Charge {
    pub fn cost(&self, tokens: Tokens) -> u128 {
        u128::from(self.input) * u128::from(tokens.input) + u128::from(self.output) * u128::from(tokens.output)
    }
}

#[derive(Debug, Clone)]
struct Counter {
    units: u128,
    weight: NonZeroU32,
    /// The providers this agent has requests waiting for: the sets in which `units` is a key.
    waiting_on: Vec<ProviderId>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { units: 0, weight: NonZeroU32::MIN, waiting_on: Vec::new() }
    }
}

/// Every agent's counter, and per provider the agents waiting there ordered by (counter, id).
#[derive(Debug, Clone, Default)]
pub(super) struct FairOrder {
    counters: BTreeMap<u64, Counter>,
    waiting: BTreeMap<ProviderId, BTreeSet<(u128, u64)>>,
    /// The smallest counter among waiting agents, kept for when none is waiting.
    floor: u128,
}

impl FairOrder {
    pub fn set_weight(&mut self, agent: u64, weight: NonZeroU32) {
        self.counters.entry(agent).or_default().weight = weight;
    }

    /// The smallest counter among waiting agents; when none is waiting, the counter the last one to
    /// stop waiting had then. Never lowered: no counter of a waiting agent is ever set below it.
    pub fn floor(&self) -> u128 {
        let smallest = self.waiting.values().filter_map(|set| set.first()).map(|&(units, _)| units).min();
        smallest.map_or(self.floor, |units| units.max(self.floor))
    }

    /// `agent` has a request waiting for `provider`. An agent that was waiting nowhere is lifted to
    /// the floor first, so the time it spent idle banks no credit.
    pub fn wait(&mut self, agent: u64, provider: ProviderId) {
        let floor = self.floor();
        let counter = self.counters.entry(agent).or_default();
        if counter.waiting_on.contains(&provider) {
            return;
        }
        if counter.waiting_on.is_empty() {
            counter.units = counter.units.max(floor);
        }
        counter.waiting_on.push(provider);
        self.waiting.entry(provider).or_default().insert((counter.units, agent));
    }

    /// `agent` has no request left waiting for `provider`.
    pub fn stop_waiting(&mut self, agent: u64, provider: ProviderId) {
        self.floor = self.floor();
        let Some(counter) = self.counters.get_mut(&agent) else { return };
        counter.waiting_on.retain(|&p| p != provider);
        if let Some(set) = self.waiting.get_mut(&provider) {
            set.remove(&(counter.units, agent));
        }
    }

    /// The agent waiting for `provider` with the smallest counter (ties go to the smaller id).
    pub fn first(&self, provider: ProviderId) -> Option<(u128, u64)> {
        self.waiting.get(&provider)?.first().copied()
    }

    /// Charges `agent` for `cost` tokens of service as its request starts; returns the units charged.
    pub fn charge(&mut self, agent: u64, cost: u128) -> u128 {
        let units = self.units_for(agent, cost);
        self.update(agent, |counter| counter.saturating_add(units));
        units
    }

    /// Replaces a charge of `charged` units by the request's actual `cost`. A refund stops at the
    /// floor: like idling, having overpaid while others were served banks no credit.
    pub fn correct(&mut self, agent: u64, charged: u128, cost: u128) {
        let floor = self.floor();
        let actual = self.units_for(agent, cost);
        self.update(agent, |counter| match actual.checked_sub(charged) {
            Some(more) => counter.saturating_add(more),
            None => counter.saturating_sub(charged - actual).max(counter.min(floor)),
        });
    }

    pub fn remove(&mut self, agent: u64) {
        self.floor = self.floor();
        if let Some(counter) = self.counters.remove(&agent) {
            for provider in counter.waiting_on {
                if let Some(set) = self.waiting.get_mut(&provider) {
                    set.remove(&(counter.units, agent));
                }
            }
        }
    }

    #[cfg(test)]
    pub fn units(&self, agent: u64) -> Option<u128> {
        self.counters.get(&agent).map(|c| c.units)
    }

    fn units_for(&self, agent: u64, cost: u128) -> u128 {
        let weight = self.counters.get(&agent).map_or(NonZeroU32::MIN, |c| c.weight);
        cost.saturating_mul(UNITS_PER_TOKEN) / u128::from(weight.get())
    }

    /// Sets `agent`'s counter, moving it in the order of every provider it waits for.
    fn update(&mut self, agent: u64, new_units: impl FnOnce(u128) -> u128) {
        let Some(counter) = self.counters.get_mut(&agent) else { return };
        let old = counter.units;
        counter.units = new_units(old);
        for provider in &counter.waiting_on {
            if let Some(set) = self.waiting.get_mut(provider) {
                set.remove(&(old, agent));
                set.insert((counter.units, agent));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProviderId = ProviderId(0);
    const UNIT: u128 = UNITS_PER_TOKEN;

    fn tokens(input: u64, output: u64) -> Tokens {
        Tokens { input, output }
    }

    #[test]
    fn charge_is_weighted_and_orders_the_waiting() {
        let mut order = FairOrder::default();
        order.set_weight(2, NonZeroU32::new(2).unwrap());
        order.wait(1, P);
        order.wait(2, P);
        let cost = Charge::default().cost(tokens(100, 50));
        assert_eq!(cost, 200);
        assert_eq!(order.charge(1, cost), 200 * UNIT);
        assert_eq!(order.charge(2, cost), 100 * UNIT, "weight 2 pays half");
        assert_eq!(order.first(P), Some((100 * UNIT, 2)));
    }

    #[test]
    fn an_idle_agent_is_lifted_to_the_floor() {
        let mut order = FairOrder::default();
        order.wait(1, P);
        order.wait(2, P);
        order.charge(1, 500);
        order.charge(2, 300);
        order.wait(3, P);
        assert_eq!(order.units(3), Some(300 * UNIT), "a newcomer starts at the smallest waiting counter");
        // With nobody waiting, the floor is what the last agent to stop waiting had then.
        for agent in [2, 3, 1] {
            order.stop_waiting(agent, P);
        }
        order.wait(4, P);
        assert_eq!(order.units(4), Some(500 * UNIT));
        // An agent above the floor keeps its counter.
        order.charge(1, 100);
        order.wait(1, P);
        assert_eq!(order.units(1), Some(600 * UNIT));
    }

    #[test]
    fn refunds_stop_at_the_floor() {
        let mut order = FairOrder::default();
        order.wait(1, P);
        order.wait(2, P);
        order.charge(2, 100);
        let charged = order.charge(1, 1_000);
        order.correct(1, charged, 400);
        assert_eq!(order.units(1), Some(400 * UNIT), "a refund above the floor is whole");
        order.charge(2, 400);
        let charged = order.charge(1, 1_000);
        order.correct(1, charged, 0);
        assert_eq!(order.units(1), Some(500 * UNIT), "but stops at the smallest waiting counter");
        let charged = order.charge(2, 50);
        order.correct(2, charged, 150);
        assert_eq!(order.units(2), Some(650 * UNIT), "an underestimate is charged in full");
    }

    #[test]
    fn a_counter_moves_in_every_provider_it_waits_for() {
        let q = ProviderId(1);
        let mut order = FairOrder::default();
        for agent in [1, 2] {
            order.wait(agent, P);
            order.wait(agent, q);
        }
        order.charge(1, 10);
        assert_eq!(order.first(P).map(|f| f.1), Some(2));
        assert_eq!(order.first(q).map(|f| f.1), Some(2));
        order.remove(2);
        assert_eq!(order.first(q).map(|f| f.1), Some(1));
    }
}
