//! [`SortedMap`]: a fixed-capacity map on a sorted array, for the node's
//! lookup tables (node id, static key, overlay address -> member slot).
//!
//! Lookups are binary searches (10 steps for 1024 members); inserts and
//! removals shift the tail, which is fine for tables that change when
//! membership changes, not per packet. No hashing, no allocation.

use heapless::Vec;

/// A map from `K` to `V` with at most `N` entries, kept sorted by key.
#[derive(Debug, Clone)]
pub struct SortedMap<K: Ord + Copy, V: Copy, const N: usize> {
    entries: Vec<(K, V), N>,
}

impl<K: Ord + Copy, V: Copy, const N: usize> Default for SortedMap<K, V, N> {
    fn default() -> Self {
        SortedMap { entries: Vec::new() }
    }
}

/// The map is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<K: Ord + Copy, V: Copy, const N: usize> SortedMap<K, V, N> {
    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| self.entries[i].1)
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: K, value: V) -> Result<Option<V>, Full> {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Ok(Some(core::mem::replace(&mut self.entries[i].1, value))),
            Err(i) => {
                self.entries.insert(i, (key, value)).map_err(|_| Full)?;
                Ok(None)
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(self.entries.remove(i).1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.entries.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_btreemap() {
        let mut m: SortedMap<u32, u16, 64> = SortedMap::default();
        let mut model = std::collections::BTreeMap::new();
        let mut x: u32 = 7;
        for i in 0..500u16 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = (x >> 16) % 100;
            if x % 3 == 0 {
                assert_eq!(m.remove(&k), model.remove(&k));
            } else if model.len() < 64 || model.contains_key(&k) {
                assert_eq!(m.insert(k, i).unwrap(), model.insert(k, i));
            } else {
                assert_eq!(m.insert(k, i), Err(Full));
            }
            assert_eq!(m.get(&k), model.get(&k).copied());
            assert_eq!(m.len(), model.len());
        }
        assert!(m.iter().map(|(k, _)| k).eq(model.keys().copied()));
    }
}
