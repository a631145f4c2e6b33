//! The one bounded cache type: entries that expire at a wall-clock second, sharded (no global
//! lock on the data path), and never more than a fixed number of them (past the cap the expired
//! entries go, then everything: losing an entry costs a re-open, never correctness).

use crate::mcp::session::now_secs;
use dashmap::DashMap;
use std::hash::Hash;

pub struct Bounded<K, V> {
    map: DashMap<K, (V, u64)>,
    cap: usize,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: DashMap::new(),
            cap,
        }
    }

    /// The live value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hit = self.map.get(key)?;
        (hit.1 > now_secs()).then(|| hit.0.clone())
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).is_some_and(|hit| hit.1 > now_secs())
    }

    /// Keeps `value` until `expires` (seconds since the epoch).
    pub fn insert(&self, key: K, value: V, expires: u64) {
        self.make_room();
        self.map.insert(key, (value, expires));
    }

    /// Inserts only when no live entry exists: false means `key` was already there (a replay).
    pub fn insert_new(&self, key: K, value: V, expires: u64) -> bool {
        self.make_room();
        let now = now_secs();
        match self.map.entry(key) {
            dashmap::mapref::entry::Entry::Occupied(mut e) if e.get().1 <= now => {
                e.insert((value, expires));
                true
            }
            dashmap::mapref::entry::Entry::Occupied(_) => false,
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert((value, expires));
                true
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn make_room(&self) {
        if self.map.len() < self.cap {
            return;
        }
        let now = now_secs();
        self.map.retain(|_, (_, exp)| *exp > now);
        if self.map.len() >= self.cap {
            self.map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_absent_and_replays_are_caught() {
        let c: Bounded<u64, &str> = Bounded::new(4);
        let later = now_secs() + 60;
        c.insert(1, "a", later);
        c.insert(2, "b", now_secs() - 1);
        assert_eq!(c.get(&1), Some("a"));
        assert_eq!(c.get(&2), None, "expired");
        assert!(c.insert_new(3, "c", later));
        assert!(!c.insert_new(3, "c", later), "a second use is a replay");
        assert!(
            c.insert_new(2, "b", later),
            "an expired entry may be replaced"
        );
    }

    #[test]
    fn never_more_than_the_cap() {
        let c: Bounded<u64, u64> = Bounded::new(100);
        let later = now_secs() + 60;
        for i in 0..1000 {
            c.insert(i, i, later);
            assert!(c.map.len() <= 100);
        }
        assert_eq!(c.get(&999), Some(999), "the newest entry survives");
    }
}
