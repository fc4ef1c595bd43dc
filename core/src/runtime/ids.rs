//! Agent ids: one id space for every agent, a slot index with a generation, so an id that outlived
//! its agent is "not found" rather than another agent.

use std::fmt;

/// An agent's id: the generation in the high 32 bits, the slot in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub u64);

fn key(slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | slot as u64
}

fn slot_of(key: u64) -> usize {
    (key & 0xFFFF_FFFF) as usize
}

fn generation_of(key: u64) -> u32 {
    (key >> 32) as u32
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Slots with generations, keyed by `generation << 32 | slot`. Generations start at 1, so no key is
/// ever 0.
#[derive(Debug)]
pub struct SlotMap<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
}

impl<T> Default for SlotMap<T> {
    fn default() -> Self {
        SlotMap { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> SlotMap<T> {
    /// Inserts the value built from its own id.
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> T) -> u64 {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            self.slots.len() - 1
        });
        let entry = &mut self.slots[slot];
        entry.0 = entry.0.wrapping_add(1).max(1);
        let key = key(slot, entry.0);
        entry.1 = Some(make(key));
        key
    }

    pub fn get(&self, key: u64) -> Option<&T> {
        match self.slots.get(slot_of(key)) {
            Some((generation, Some(value))) if *generation == generation_of(key) => Some(value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        match self.slots.get_mut(slot_of(key)) {
            Some((generation, Some(value))) if *generation == generation_of(key) => Some(value),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: u64) -> Option<T> {
        let entry = self.slots.get_mut(slot_of(key))?;
        if entry.0 != generation_of(key) {
            return None;
        }
        let value = entry.1.take()?;
        self.free.push(slot_of(key));
        Some(value)
    }

    /// The key of whatever occupies `slot` now.
    pub fn key_at_slot(&self, slot: usize) -> Option<u64> {
        match self.slots.get(slot) {
            Some((generation, Some(_))) => Some(key(slot, *generation)),
            _ => None,
        }
    }

    /// The slot of a key, for poll tokens.
    pub fn slot(key: u64) -> usize {
        slot_of(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, (generation, value))| value.as_ref().map(|v| (key(slot, *generation), v)))
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_id_finds_nothing_even_when_its_slot_is_reused() {
        let mut map = SlotMap::default();
        let a = map.insert_with(|_| "a");
        assert_eq!(map.remove(a), Some("a"));
        let b = map.insert_with(|_| "b");
        assert_ne!(a, b);
        assert_eq!(slot_of(a), slot_of(b));
        assert_eq!(map.get(a), None);
        assert_eq!(map.remove(a), None);
        assert_eq!(map.get(b), Some(&"b"));
        assert_eq!(map.len(), 1);
    }
}
