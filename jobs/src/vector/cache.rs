//! The vectors the built-in index has read or written lately, each valid for one
//! `embedded_at`: what spares a search from reading every vector of the owner again. Plain
//! data with no database, so its eviction is tested on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Vectors by memory, each valid for one `embedded_at`, evicted oldest-inserted first once
/// their total size passes the capacity.
#[derive(Debug)]
pub(super) struct VectorCache {
    entries: HashMap<Uuid, CachedVector>,
    /// Insertion order, for eviction; a stale stamp means the entry was replaced since.
    order: VecDeque<(Uuid, u64)>,
    next_stamp: u64,
    bytes: usize,
    capacity_bytes: usize,
}

#[derive(Debug)]
struct CachedVector {
    embedded_at: DateTime<Utc>,
    vector: Arc<[f32]>,
    stamp: u64,
}

impl VectorCache {
    pub(super) fn new(capacity_bytes: usize) -> Self {
        VectorCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            bytes: 0,
            capacity_bytes,
        }
    }

    pub(super) fn get(&self, id: &Uuid, embedded_at: &DateTime<Utc>) -> Option<Arc<[f32]>> {
        self.entries
            .get(id)
            .filter(|e| e.embedded_at == *embedded_at)
            .map(|e| e.vector.clone())
    }

    pub(super) fn insert(&mut self, id: Uuid, embedded_at: DateTime<Utc>, vector: Arc<[f32]>) {
        let size = std::mem::size_of_val(&*vector);
        if size > self.capacity_bytes {
            return;
        }
        self.remove(&id);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.bytes += size;
        self.entries.insert(
            id,
            CachedVector {
                embedded_at,
                vector,
                stamp,
            },
        );
        self.order.push_back((id, stamp));
        while self.bytes > self.capacity_bytes {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.stamp == stamp) {
                self.remove(&old);
            }
        }
        // Replaced entries leave stale stamps behind; compact before they outnumber the live.
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|(id, stamp)| entries.get(id).is_some_and(|e| e.stamp == *stamp));
        }
    }

    pub(super) fn remove(&mut self, id: &Uuid) {
        if let Some(e) = self.entries.remove(id) {
            self.bytes -= std::mem::size_of_val(&*e.vector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_validates_by_embedded_at_and_evicts_oldest() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let v = |x: f32| -> Arc<[f32]> { vec![x; 4].into() }; // 16 bytes each
        let mut c = VectorCache::new(40);
        let (a, b, d) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        c.insert(a, at(1), v(1.0));
        c.insert(b, at(1), v(2.0));
        assert_eq!(c.get(&a, &at(1)).unwrap()[0], 1.0);
        assert!(c.get(&a, &at(2)).is_none(), "rewritten since: not used");
        c.insert(a, at(2), v(3.0)); // replaces a; b is now the oldest
        c.insert(d, at(1), v(4.0)); // 48 bytes > 40: b goes
        assert!(c.get(&b, &at(1)).is_none());
        assert_eq!(c.get(&a, &at(2)).unwrap()[0], 3.0);
        assert_eq!(c.get(&d, &at(1)).unwrap()[0], 4.0);
        assert_eq!(c.bytes, 32);
        c.remove(&a);
        assert_eq!(c.bytes, 16);
        c.insert(a, at(3), vec![0.0; 100].into()); // larger than the whole cache: not kept
        assert!(c.get(&a, &at(3)).is_none());
    }
}
