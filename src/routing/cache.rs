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

/// A byte-string key kept in the map's own entry when short (a `Host`
/// value, nearly always): a lookup compares it where it already reads the
/// entry, instead of following a pointer to bytes on a line of their own,
/// cold by the time the next request comes (`perf` at 10,000 req/s had
/// `memcmp` from the request's cache lookups at 0.4-0.8% of the proxy's
/// CPU; how much of it was this comparison was not measured apart).
/// Longer keys are shared (`Arc`), so that publishing a new map copies
/// pointers, not bytes.
#[derive(Clone)]
pub(crate) enum BytesKey {
    Short {
        len: u8,
        bytes: [u8; BytesKey::SHORT],
    },
    Long(Arc<[u8]>),
}

impl BytesKey {
    /// The longest key kept inline (the enum is then 32 bytes).
    const SHORT: usize = 30;

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            BytesKey::Short { len, bytes } => bytes.get(..*len as usize).unwrap_or_default(),
            BytesKey::Long(b) => b,
        }
    }
}

impl From<&[u8]> for BytesKey {
    fn from(k: &[u8]) -> BytesKey {
        let mut bytes = [0u8; BytesKey::SHORT];
        match bytes.get_mut(..k.len()) {
            Some(room) => {
                room.copy_from_slice(k);
                // SHORT fits in a u8.
                BytesKey::Short {
                    len: k.len() as u8,
                    bytes,
                }
            }
            None => BytesKey::Long(Arc::from(k)),
        }
    }
}

impl Borrow<[u8]> for BytesKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

// As the bytes do, so that a map of these is looked up by `&[u8]`.
impl PartialEq for BytesKey {
    fn eq(&self, other: &BytesKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for BytesKey {}

impl Hash for BytesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

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

    /// `f` of the value at `k`, if any, read in place (nothing cloned
    /// unless `f` clones).
    pub(crate) fn with<Q, R>(&self, k: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.load().get(k).map(f)
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
    fn byte_keys_short_and_long_are_found_by_their_bytes() {
        use std::hash::BuildHasher;
        let m: ReadMap<BytesKey, usize> = ReadMap::new();
        let keys: Vec<Vec<u8>> = (0..70).map(|n| vec![b'a' + (n % 26) as u8; n]).collect();
        for (i, k) in keys.iter().enumerate() {
            m.update(|map| map.insert(BytesKey::from(k.as_slice()), i));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k.as_slice()), Some(i), "{} bytes", k.len());
            let key = BytesKey::from(k.as_slice());
            assert_eq!(key.as_bytes(), k.as_slice());
            let s = RandomState::default();
            assert_eq!(s.hash_one(&key), s.hash_one(k.as_slice()));
        }
        assert!(matches!(
            BytesKey::from([7u8; 30].as_slice()),
            BytesKey::Short { .. }
        ));
        assert!(matches!(
            BytesKey::from([7u8; 31].as_slice()),
            BytesKey::Long(_)
        ));
    }

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
