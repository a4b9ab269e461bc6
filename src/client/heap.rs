//! The `heap` balancer's memory: Finagle's HeapBalancer, a min-heap of a
//! client's endpoints by load.
//!
//! Each endpoint knows its position in the heap, so when its load changes
//! (a request starts or finishes) it is re-sifted in O(log n) rather than
//! the whole set scanned; the least loaded endpoint is always at the top.
//! Load is what every balancer here uses: requests in flight (plus one)
//! divided by the endpoint's weight, so weights keep their meaning. The heap
//! orders by load only; whether an endpoint may be used (failure accrual,
//! exclusion after a refused connection) is asked while walking it from the
//! top, best first, so a pick looks at as few endpoints as it must.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::balance::EndpointState;

/// Not in any heap.
pub(crate) const NOWHERE: usize = usize::MAX;

/// A min-heap of endpoints by load, with each endpoint's position kept in
/// the endpoint (`EndpointState::heap_index`).
#[derive(Debug, Default)]
pub(crate) struct Heap {
    /// `(load, endpoint)`, heap-ordered by load.
    entries: Vec<(f64, Arc<EndpointState>)>,
    /// Whether any endpoint has a usable weight; if none does, all count as
    /// weight 1 rather than none being used.
    any_usable: bool,
}

/// A key for the standard library's max-heap that orders loads (total order,
/// so NaN cannot break the walk) and then positions.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ByLoad(f64, usize);

impl Eq for ByLoad {}

impl PartialOrd for ByLoad {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByLoad {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl Heap {
    /// The heap's load of `e`: unusable weights sort last (unless no weight
    /// is usable).
    fn key(&self, e: &EndpointState) -> f64 {
        let load = e.outstanding() as f64 + 1.0;
        if !self.any_usable {
            load
        } else if e.usable() {
            load / e.weight
        } else {
            f64::INFINITY
        }
    }

    /// Hold exactly `endpoints` (after an endpoint-set update), keeping
    /// nothing of the previous set but the endpoints' own load.
    pub(crate) fn rebuild(&mut self, endpoints: &[Arc<EndpointState>]) {
        for (_, e) in &self.entries {
            e.heap_index.store(NOWHERE, Ordering::Relaxed);
        }
        self.any_usable = endpoints.iter().any(|e| e.usable());
        self.entries = endpoints.iter().map(|e| (self.key(e), e.clone())).collect();
        for (i, (_, e)) in self.entries.iter().enumerate() {
            e.heap_index.store(i, Ordering::Relaxed);
        }
        for i in (0..self.entries.len() / 2).rev() {
            self.sift_down(i);
        }
    }

    /// `e`'s load changed: move it to its place. An endpoint this heap does
    /// not hold (removed by an update) is ignored.
    pub(crate) fn update(&mut self, e: &Arc<EndpointState>) {
        let i = e.heap_index.load(Ordering::Relaxed);
        let key = self.key(e);
        match self.entries.get_mut(i) {
            Some(entry) if Arc::ptr_eq(&entry.1, e) => entry.0 = key,
            _ => return,
        }
        let i = self.sift_up(i);
        self.sift_down(i);
    }

    /// The least loaded endpoint with a usable weight that `accept` takes, walking the heap best
    /// first (a frontier of the children of the endpoints refused so far),
    /// so only as many endpoints are looked at as are refused.
    pub(crate) fn best(
        &self,
        mut accept: impl FnMut(&EndpointState) -> bool,
    ) -> Option<&Arc<EndpointState>> {
        let mut frontier = BinaryHeap::new();
        if let Some((k, _)) = self.entries.first() {
            frontier.push(Reverse(ByLoad(*k, 0)));
        }
        while let Some(Reverse(ByLoad(_, i))) = frontier.pop() {
            let Some((_, e)) = self.entries.get(i) else {
                continue;
            };
            // Unusable weights are used only when no weight is usable.
            if (!self.any_usable || e.usable()) && accept(e) {
                return Some(e);
            }
            for c in [2 * i + 1, 2 * i + 2] {
                if let Some((k, _)) = self.entries.get(c) {
                    frontier.push(Reverse(ByLoad(*k, c)));
                }
            }
        }
        None
    }

    fn less(&self, a: usize, b: usize) -> bool {
        match (self.entries.get(a), self.entries.get(b)) {
            (Some(x), Some(y)) => x.0.total_cmp(&y.0).is_lt(),
            _ => false,
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.entries.swap(a, b);
        for i in [a, b] {
            if let Some((_, e)) = self.entries.get(i) {
                e.heap_index.store(i, Ordering::Relaxed);
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if self.less(l, min) {
                min = l;
            }
            if self.less(r, min) {
                min = r;
            }
            if min == i {
                return;
            }
            self.swap(i, min);
            i = min;
        }
    }

    /// Whether every entry is in heap order and knows its position.
    #[cfg(test)]
    pub(crate) fn is_valid(&self) -> bool {
        self.entries.iter().enumerate().all(|(i, (k, e))| {
            e.heap_index.load(Ordering::Relaxed) == i
                && *k == self.key(e)
                && (i == 0 || !self.less(i, (i - 1) / 2))
        })
    }

    /// The endpoint at the top.
    #[cfg(test)]
    pub(crate) fn top(&self) -> Option<&Arc<EndpointState>> {
        self.entries.first().map(|(_, e)| e)
    }
}
