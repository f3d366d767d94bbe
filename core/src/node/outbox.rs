//! [`Outbox`]: the bounded queue of small datagrams a node answers with
//! (handshake responses, cookie replies, hello replies) until the caller's
//! next `poll_transmit`.
//!
//! When it is full the oldest answer is dropped: every queued datagram is a
//! reply the sender will retry, so losing one under a flood costs a retry,
//! never correctness.

use core::net::SocketAddr;

use heapless::Deque;

/// The largest datagram the outbox holds.
pub const OUTBOX_MTU: usize = 192;
/// How many datagrams it holds.
pub const OUTBOX_LEN: usize = 16;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One UDP endpoint.
    Unicast(SocketAddr),
    /// The LAN discovery multicast group (on the node's port).
    LanMulticast,
}

struct Queued<T> {
    to: T,
    len: u16,
    bytes: [u8; OUTBOX_MTU],
}

/// See the module docs. `T` says where a datagram goes.
pub struct Outbox<T> {
    queue: Deque<Queued<T>, OUTBOX_LEN>,
    dropped: u64,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox {
            queue: Deque::new(),
            dropped: 0,
        }
    }
}

impl<T: Copy> Outbox<T> {
    /// Queues `bytes` (at most [`OUTBOX_MTU`]) for `to`.
    pub fn push(&mut self, to: T, bytes: &[u8]) {
        debug_assert!(bytes.len() <= OUTBOX_MTU);
        let len = bytes.len().min(OUTBOX_MTU);
        if self.queue.is_full() {
            self.queue.pop_front();
            self.dropped += 1;
        }
        let mut q = Queued {
            to,
            len: len as u16,
            bytes: [0; OUTBOX_MTU],
        };
        q.bytes[..len].copy_from_slice(&bytes[..len]);
        let _ = self.queue.push_back(q);
    }

    /// Moves the oldest datagram into `out`; returns its destination and length.
    pub fn pop(&mut self, out: &mut [u8]) -> Option<(T, usize)> {
        let q = self.queue.front()?;
        let n = q.len as usize;
        if out.len() < n {
            return None;
        }
        out[..n].copy_from_slice(&q.bytes[..n]);
        let to = q.to;
        self.queue.pop_front();
        Some((to, n))
    }

    /// Datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_drops_oldest_when_full() {
        let mut o = Outbox::<Destination>::default();
        let to = Destination::Unicast("192.0.2.1:1".parse().unwrap());
        for i in 0..OUTBOX_LEN as u8 + 2 {
            o.push(to, &[i; 10]);
        }
        assert_eq!(o.dropped(), 2);
        let mut buf = [0u8; 256];
        assert_eq!(o.pop(&mut buf), Some((to, 10)));
        assert_eq!(buf[0], 2, "the two oldest went");
        let mut n = 1;
        while o.pop(&mut buf).is_some() {
            n += 1;
        }
        assert_eq!(n, OUTBOX_LEN);
        assert_eq!(o.pop(&mut buf), None);
    }
}
