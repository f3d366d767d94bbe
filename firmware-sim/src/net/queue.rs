//! The event queue of the simulated network: a min-heap on (time, sequence).
//!
//! Ties in time are broken by insertion order, so a run never depends on
//! how the heap happens to arrange equal keys: same calls, same order.
//!
//! This module owns ordering only; it never looks inside the events.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use kairos_core::time::Instant;

/// Events of type `T`, popped earliest first, first-in first-out on ties.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules `item` at `at`.
    pub(crate) fn push(&mut self, at: Instant, item: T) {
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Entry { at, seq, item });
    }

    /// When the earliest event is due.
    pub(crate) fn next_time(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest event, if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.item))
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_fifo_on_ties() {
        let mut q = EventQueue::new();
        q.push(Instant::from_micros(5), 'c');
        q.push(Instant::from_micros(1), 'a');
        q.push(Instant::from_micros(5), 'd');
        q.push(Instant::from_micros(1), 'b');
        assert_eq!(q.next_time(), Some(Instant::from_micros(1)));
        assert_eq!(q.pop_due(Instant::ZERO), None);
        let mut out = vec![];
        while let Some((_, c)) = q.pop_due(Instant::from_micros(5)) {
            out.push(c);
        }
        assert_eq!(out, ['a', 'b', 'c', 'd']);
        assert_eq!(q.len(), 0);
        assert_eq!(q.next_time(), None);
    }
}
