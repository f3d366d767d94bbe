//! Reading structure out of fuzz input, and writing it (for the corpus
//! generator), in one place so the two always agree.
//!
//! Everything reads "as much as there is": a short input ends the script, it
//! never fails, so every byte string is a valid input.

use kairos_core::time::Duration;

/// A cursor over fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next two bytes, little-endian (missing bytes read as zero).
    pub fn u16(&mut self) -> Option<u16> {
        let lo = self.u8()?;
        Some(u16::from_le_bytes([lo, self.u8().unwrap_or(0)]))
    }

    /// The next eight bytes, little-endian (missing bytes read as zero).
    pub fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        let n = self.data.len().min(8);
        if n == 0 {
            return None;
        }
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Some(u64::from_le_bytes(b))
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length-prefixed chunk: one length byte, or `0xff` then a
    /// little-endian u16 for longer chunks (see [`Writer::chunk`]).
    pub fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = match self.u8()? {
            0xff => self.u16()? as usize,
            n => n as usize,
        };
        Some(self.bytes(len))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }
}

/// A time step from one byte: the low six bits count units of the duration
/// the top two bits pick (1 ms, 100 ms, 5 s, 60 s), so one byte reaches
/// anything from a millisecond to about an hour (every WireGuard timer).
pub fn time_step(b: u8) -> Duration {
    let n = u64::from(b & 0x3f);
    match b >> 6 {
        0 => Duration::from_millis(n),
        1 => Duration::from_millis(100 * n),
        2 => Duration::from_secs(5 * n),
        _ => Duration::from_secs(60 * n),
    }
}

/// The byte [`time_step`] reads as `n` units of `unit` (0: 1 ms, 1: 100 ms,
/// 2: 5 s, 3: 60 s).
pub const fn step_byte(unit: u8, n: u8) -> u8 {
    assert!(unit < 4 && n < 64);
    (unit << 6) | n
}

/// Applies input-chosen edits to a datagram: one control byte whose low three
/// bits count XOR edits (position, value), bit 3 truncates to an input-chosen
/// length, bit 4 appends a chunk, bit 5 overwrites the 4-byte header with
/// input bytes.
pub fn mutate(input: &mut Input<'_>, msg: &mut Vec<u8>) {
    let Some(ctl) = input.u8() else { return };
    for _ in 0..ctl & 7 {
        let (Some(pos), Some(x)) = (input.u16(), input.u8()) else {
            return;
        };
        if !msg.is_empty() {
            let i = pos as usize % msg.len();
            msg[i] ^= x;
        }
    }
    if ctl & 8 != 0 {
        let n = input.u16().unwrap_or(0) as usize;
        msg.truncate(n % (msg.len() + 1));
    }
    if ctl & 16 != 0 {
        if let Some(extra) = input.chunk() {
            msg.extend_from_slice(extra);
        }
    }
    if ctl & 32 != 0 {
        let head = input.bytes(4);
        for (d, s) in msg.iter_mut().zip(head) {
            *d = *s;
        }
    }
}

/// Builds inputs that [`Input`] reads back as written.
#[derive(Default)]
pub struct Writer {
    /// The bytes so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// An empty input.
    pub fn new() -> Self {
        Writer::default()
    }
    /// One byte.
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.out.push(b);
        self
    }
    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }
    /// A length-prefixed chunk, as [`Input::chunk`] reads it.
    pub fn chunk(&mut self, b: &[u8]) -> &mut Self {
        assert!(b.len() <= u16::MAX as usize);
        if b.len() < 0xff {
            self.out.push(b.len() as u8);
        } else {
            self.out.push(0xff);
            self.out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        }
        self.bytes(b)
    }
    /// A mutation control byte for [`mutate`] with XOR edits only.
    pub fn xor_edits(&mut self, edits: &[(u16, u8)]) -> &mut Self {
        assert!(edits.len() < 8);
        self.u8(edits.len() as u8);
        for &(pos, x) in edits {
            self.u16(pos).u8(x);
        }
        self
    }
    /// The finished input.
    pub fn finish(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        let long = vec![7u8; 600];
        let data = Writer::new().chunk(b"abc").chunk(&long).chunk(&[]).finish();
        let mut i = Input::new(&data);
        assert_eq!(i.chunk(), Some(&b"abc"[..]));
        assert_eq!(i.chunk(), Some(&long[..]));
        assert_eq!(i.chunk(), Some(&[][..]));
        assert_eq!(i.chunk(), None);
    }

    #[test]
    fn time_steps() {
        assert_eq!(time_step(step_byte(0, 5)), Duration::from_millis(5));
        assert_eq!(time_step(step_byte(2, 1)), Duration::from_secs(5));
        assert_eq!(time_step(step_byte(3, 63)), Duration::from_secs(3780));
    }

    #[test]
    fn mutations() {
        let data = Writer::new().xor_edits(&[(1, 0xff), (9, 1)]).finish();
        let mut m = vec![0u8; 4];
        mutate(&mut Input::new(&data), &mut m);
        assert_eq!(m, [0, 0xff ^ 1, 0, 0]);
    }
}
