//! The event queue of the simulated network: earliest (time, sequence)
//! first.
//!
//! Ties in time are broken by insertion order, so a run never depends on
//! how the heap happens to arrange equal keys: same calls, same order.
//!
//! Most events are pushed in time order already (a datagram sent now over a
//! link of fixed latency arrives after every one sent earlier over a link
//! like it), so they go into a few FIFO runs, each sorted by (time,
//! sequence), and only the others into a heap; popping takes the least of
//! the run heads and the heap top. The order is exactly the heap's alone;
//! the runs only spare the heap (a 1000-node join storm keeps hundreds of
//! thousands of datagrams in flight, and sifting them missed the cache).
//!
//! This module owns ordering only; it never looks inside the events.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use kairos_core::time::Instant;

/// FIFO runs kept besides the heap.
const RUNS: usize = 4;

/// Events of type `T`, popped earliest first, first-in first-out on ties.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    runs: [VecDeque<Entry<T>>; RUNS],
    seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            runs: Default::default(),
            seq: 0,
        }
    }

    /// Schedules `item` at `at`.
    pub(crate) fn push(&mut self, at: Instant, item: T) {
        let seq = self.seq;
        self.seq += 1;
        let e = Entry { at, seq, item };
        // A later sequence number at a time no earlier than a run's last
        // keeps that run sorted.
        match self.runs.iter_mut().find(|r| r.back().is_none_or(|b| b.at <= at)) {
            Some(run) => run.push_back(e),
            None => self.heap.push(e),
        }
    }

    /// Where the earliest event is: a run's index, or `RUNS` for the heap.
    fn earliest(&self) -> Option<usize> {
        let mut best: Option<(Instant, u64, usize)> = self.heap.peek().map(|e| (e.at, e.seq, RUNS));
        for (i, r) in self.runs.iter().enumerate() {
            if let Some(e) = r.front() {
                if best.is_none_or(|(at, seq, _)| (e.at, e.seq) < (at, seq)) {
                    best = Some((e.at, e.seq, i));
                }
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// When the earliest event is due.
    pub(crate) fn next_time(&self) -> Option<Instant> {
        match self.earliest()? {
            RUNS => self.heap.peek().map(|e| e.at),
            i => self.runs[i].front().map(|e| e.at),
        }
    }

    /// The earliest event, if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        let e = match self.earliest()? {
            RUNS if self.heap.peek()?.at <= now => self.heap.pop()?,
            RUNS => return None,
            i if self.runs[i].front()?.at <= now => self.runs[i].pop_front()?,
            _ => return None,
        };
        Some((e.at, e.item))
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.runs.iter().map(|r| r.len()).sum::<usize>()
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

    /// Runs and heap together pop in exactly the order of a plain sort by
    /// (time, insertion), pushes and pops interleaved.
    #[test]
    fn same_order_as_a_sort_by_time_then_insertion() {
        let mut q = EventQueue::new();
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut x = 12345u64;
        let mut popped = (Vec::new(), Vec::new());
        let mut now = 0;
        for n in 0..20_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Mostly fixed delays (runs), sometimes jitter (the heap).
            let delay = [250, 250, 400, 30][(x >> 33) as usize % 4] + if x % 7 == 0 { (x >> 40) % 300 } else { 0 };
            q.push(Instant::from_micros(now + delay), n);
            model.push((now + delay, n));
            if x % 3 == 0 {
                now += (x >> 20) % 50;
                while let Some((at, v)) = q.pop_due(Instant::from_micros(now)) {
                    popped.0.push((at.as_micros(), v));
                }
                model.sort();
                let due = model.iter().take_while(|(at, _)| *at <= now).count();
                popped.1.extend(model.drain(..due));
                assert_eq!(popped.0, popped.1);
            }
        }
        assert_eq!(q.len(), model.len());
    }
}
