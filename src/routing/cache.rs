//! Read-mostly maps for the per-request path.
//!
//! Every request looks up its identification and its binding; almost none
//! add to them. A [`ReadMap`] makes the lookup a single atomic load of the
//! current map (no lock, no allocation, no shared counter bumped, so
//! worker threads do not contend) and makes the rare write pay instead: it
//! copies the map, changes the copy and publishes it. Writers are serialized
//! by a mutex that readers never touch.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foldhash::quality::RandomState;

/// The maps' hashing: seeded per process and per map (keys come from
/// requests), and a fraction of SipHash's cost on short keys.
pub(crate) type Map<K, V> = HashMap<K, V, RandomState>;

/// A map read without locks and written by copy-on-write.
pub(crate) struct ReadMap<K, V> {
    current: ArcSwap<Map<K, V>>,
    writer: Mutex<()>,
}

impl<K: Hash + Eq + Clone, V: Clone> ReadMap<K, V> {
    /// An empty map.
    pub(crate) fn new() -> ReadMap<K, V> {
        ReadMap {
            current: ArcSwap::from_pointee(Map::default()),
            writer: Mutex::new(()),
        }
    }

    /// The value at `k`, if any (a clone: keep values cheap to clone).
    pub(crate) fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.load().get(k).cloned()
    }

    /// Change the map under the writers' lock and publish the result.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Map<K, V>) -> R) -> R {
        // A panic in another writer left the map as it was: go on.
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Map::clone(&self.current.load());
        let r = f(&mut next);
        self.current.store(Arc::new(next));
        r
    }

    /// Entries now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Every value now (for admin views).
    pub(crate) fn values(&self) -> Vec<V> {
        self.current.load().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_published_writes() {
        let m: ReadMap<Box<[u8]>, u32> = ReadMap::new();
        assert_eq!(m.get(b"a".as_slice()), None);
        m.update(|map| map.insert(b"a".to_vec().into_boxed_slice(), 1));
        assert_eq!(m.get(b"a".as_slice()), Some(1));
        assert_eq!(m.len(), 1);
        m.update(|map| map.clear());
        assert_eq!(m.values(), Vec::<u32>::new());
    }
}
