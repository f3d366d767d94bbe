//! Handshake admission: MAC1, MAC2 and cookie replies (WireGuard's DoS
//! defence), on both ends.
//!
//! [`Admission`] is the responder side, one per node. Every handshake
//! message must carry a MAC1 keyed by the receiver's public key and the
//! network's MAC key: strangers (and a wrong token) are dropped before any
//! Diffie-Hellman. When the node sees more handshake messages per second
//! than its threshold, it is "under load" and also requires MAC2, a MAC keyed
//! by a cookie bound to the sender's address; a sender without one gets a
//! cookie reply instead of a handshake, which proves it can receive at that
//! address before it costs the node any X25519.
//!
//! [`CookieJar`] is the sender side, one per peer: it keeps the last cookie
//! (valid 120 s) and adds MAC2 to outgoing handshake messages.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{HandshakeError, LocalKeys, RemoteKeys};
use crate::crypto::{mac, xaead_open, xaead_seal};
use crate::time::{Duration, Instant};
use crate::wire::{CookieReplyPacket, CookieReplyRepr, COOKIE_REPLY_LEN, MAC_LEN};

/// How long a cookie secret (and a received cookie) stays valid.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);
/// Handshake messages per second above which a node requires cookies.
pub const DEFAULT_LOAD_THRESHOLD: u32 = 1000;
/// How long a node stays under load after the rate drops again.
const LOAD_STICKINESS: Duration = Duration::from_secs(1);

/// Why a handshake message was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// MAC1 is wrong: not a member of this network, or not meant for us.
    BadMac1,
    /// Under load and MAC2 is missing or stale: answer with a cookie reply.
    CookieRequired,
}

/// The responder's admission control. See the module docs.
pub struct Admission {
    secret: [u8; 32],
    secret_born: Option<Instant>,
    threshold: u32,
    window_start: Instant,
    in_window: u32,
    under_load_until: Instant,
}

impl Admission {
    /// Admission control that requires cookies above `threshold` handshake
    /// messages per second (0 = always).
    pub fn new(threshold: u32) -> Self {
        Admission {
            secret: [0; 32],
            secret_born: None,
            threshold,
            window_start: Instant::ZERO,
            in_window: 0,
            under_load_until: Instant::ZERO,
        }
    }

    /// Whether the node currently requires cookies.
    pub fn under_load(&self, now: Instant) -> bool {
        self.threshold == 0 || now < self.under_load_until
    }

    /// Checks a handshake message (initiation or response) from `from`.
    /// Counts it towards the load either way.
    pub fn admit(&mut self, now: Instant, local: &LocalKeys, from: SocketAddr, msg: &[u8]) -> Result<(), Refusal> {
        self.count(now);
        let (mac1_input, rest) = msg.split_at(msg.len() - 2 * MAC_LEN);
        let mac1_got = &rest[..MAC_LEN];
        let want = mac(&local.mac1_key, &[mac1_input]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], mac1_got)) {
            return Err(Refusal::BadMac1);
        }
        if !self.under_load(now) {
            return Ok(());
        }
        let Some(cookie) = self.cookie_for(now, from) else {
            return Err(Refusal::CookieRequired);
        };
        let mac2_input = &msg[..msg.len() - MAC_LEN];
        let want = mac(&cookie_key(&cookie), &[mac2_input]);
        if bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &msg[msg.len() - MAC_LEN..])) {
            Ok(())
        } else {
            Err(Refusal::CookieRequired)
        }
    }

    /// Writes a cookie reply to `msg` (a refused handshake message from
    /// `from`) into `out[..COOKIE_REPLY_LEN]` and returns its length.
    pub fn write_cookie_reply(
        &mut self,
        now: Instant,
        local: &LocalKeys,
        from: SocketAddr,
        msg: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
        out: &mut [u8],
    ) -> usize {
        if self
            .secret_born
            .is_none_or(|t| now.saturating_since(t) >= COOKIE_LIFETIME)
        {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let cookie = self.cookie_for(now, from).expect("secret was just refreshed");
        let sender_index = u32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
        let mac1 = &msg[msg.len() - 2 * MAC_LEN..msg.len() - MAC_LEN];
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let mut encrypted_cookie = [0u8; 32];
        xaead_seal(&local.cookie_key, &nonce, mac1, &cookie, &mut encrypted_cookie);
        CookieReplyRepr {
            receiver_index: sender_index,
            nonce,
            encrypted_cookie,
        }
        .emit(out);
        COOKIE_REPLY_LEN
    }

    fn cookie_for(&self, now: Instant, from: SocketAddr) -> Option<[u8; MAC_LEN]> {
        let born = self.secret_born?;
        if now.saturating_since(born) >= COOKIE_LIFETIME {
            return None;
        }
        let (ip, port) = address_bytes(from);
        Some(mac(&self.secret, &[&ip[..], &port]))
    }

    fn count(&mut self, now: Instant) {
        if now.saturating_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        if self.in_window > self.threshold {
            self.under_load_until = now + LOAD_STICKINESS;
        }
    }
}

fn address_bytes(a: SocketAddr) -> ([u8; 16], [u8; 2]) {
    let ip = match a {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
        SocketAddr::V6(v6) => v6.ip().octets(),
    };
    (ip, a.port().to_be_bytes())
}

/// MAC2 is keyed by the 16-byte cookie, zero-extended to BLAKE2s' key size.
fn cookie_key(cookie: &[u8; MAC_LEN]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..MAC_LEN].copy_from_slice(cookie);
    k
}

/// The sender side of cookies, one per peer.
#[derive(Default)]
pub struct CookieJar {
    cookie: Option<([u8; MAC_LEN], Instant)>,
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl CookieJar {
    /// Records the MAC1 of an outgoing handshake message `msg` and sets its
    /// MAC2 if a fresh cookie is held.
    pub fn stamp(&mut self, now: Instant, msg: &mut [u8]) {
        let n = msg.len();
        let mut m1 = [0u8; MAC_LEN];
        m1.copy_from_slice(&msg[n - 2 * MAC_LEN..n - MAC_LEN]);
        self.last_mac1 = Some(m1);
        let mac2 = match self.cookie {
            Some((c, got)) if now.saturating_since(got) < COOKIE_LIFETIME => {
                mac(&cookie_key(&c), &[&msg[..n - MAC_LEN]])
            }
            _ => [0; MAC_LEN],
        };
        msg[n - MAC_LEN..].copy_from_slice(&mac2);
    }

    /// Takes a cookie from a reply by `remote` to our last handshake message.
    pub fn consume_reply<T: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        remote: &RemoteKeys,
        reply: &CookieReplyPacket<T>,
    ) -> Result<(), HandshakeError> {
        let aad = self.last_mac1.ok_or(HandshakeError::UnexpectedCookie)?;
        let mut cookie = [0u8; MAC_LEN];
        xaead_open(
            &remote.cookie_key,
            &reply.nonce(),
            &aad,
            reply.encrypted_cookie(),
            &mut cookie,
        )
        .map_err(|_| HandshakeError::Decrypt)?;
        self.cookie = Some((cookie, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::token::NetworkKeys;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn local(seed: u8) -> LocalKeys {
        LocalKeys::new(&Identity::from_bytes(&[seed; 64]), &NetworkKeys::derive(&[5; 32]))
    }

    fn message_to(sender: &LocalKeys, to: &LocalKeys, jar: &mut CookieJar, now: Instant) -> [u8; 64] {
        let remote = RemoteKeys::new(sender, to.public()).unwrap();
        let mut msg = [0u8; 64];
        msg[0] = 1;
        msg[4] = 9;
        let m1 = mac(&remote.mac1_key, &[&msg[..32]]);
        msg[32..48].copy_from_slice(&m1);
        jar.stamp(now, &mut msg);
        msg
    }

    #[test]
    fn cookie_round_trip_under_load() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (a, b) = (local(1), local(2));
        let from: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut adm = Admission::new(0); // always under load
        let mut jar = CookieJar::default();
        let now = Instant::from_secs(10);

        let msg = message_to(&a, &b, &mut jar, now);
        assert_eq!(adm.admit(now, &b, from, &msg), Err(Refusal::CookieRequired));
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        adm.write_cookie_reply(now, &b, from, &msg, &mut rng, &mut reply);
        let b_from_a = RemoteKeys::new(&a, b.public()).unwrap();
        jar.consume_reply(now, &b_from_a, &CookieReplyPacket::new_checked(&reply[..]).unwrap())
            .unwrap();

        let msg = message_to(&a, &b, &mut jar, now);
        assert_eq!(adm.admit(now, &b, from, &msg), Ok(()));
        // The cookie is bound to the source address.
        let other: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        assert_eq!(adm.admit(now, &b, other, &msg), Err(Refusal::CookieRequired));
        // And it expires with the secret.
        let later = now + COOKIE_LIFETIME;
        let msg = message_to(&a, &b, &mut jar, later);
        assert_eq!(adm.admit(later, &b, from, &msg), Err(Refusal::CookieRequired));
    }

    #[test]
    fn wrong_mac1_is_refused_first() {
        let (a, b, c) = (local(1), local(2), local(3));
        let mut adm = Admission::new(DEFAULT_LOAD_THRESHOLD);
        let from: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let msg = message_to(&a, &c, &mut CookieJar::default(), Instant::ZERO);
        assert_eq!(adm.admit(Instant::ZERO, &b, from, &msg), Err(Refusal::BadMac1));
        let msg = message_to(&a, &b, &mut CookieJar::default(), Instant::ZERO);
        assert_eq!(adm.admit(Instant::ZERO, &b, from, &msg), Ok(()));
    }

    #[test]
    fn load_engages_above_threshold_and_relaxes() {
        let (a, b) = (local(1), local(2));
        let mut adm = Admission::new(3);
        let from: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let t = Instant::from_secs(1);
        let msg = message_to(&a, &b, &mut CookieJar::default(), t);
        for _ in 0..3 {
            assert_eq!(adm.admit(t, &b, from, &msg), Ok(()));
        }
        assert_eq!(adm.admit(t, &b, from, &msg), Err(Refusal::CookieRequired));
        assert!(adm.under_load(t + Duration::from_millis(500)));
        assert!(!adm.under_load(t + Duration::from_secs(2)));
    }

    #[test]
    fn unsolicited_cookie_reply_is_refused() {
        let (a, b) = (local(1), local(2));
        let remote = RemoteKeys::new(&a, b.public()).unwrap();
        let reply = [3u8, 0, 0, 0]
            .iter()
            .chain([0u8; 60].iter())
            .copied()
            .collect::<std::vec::Vec<u8>>();
        let p = CookieReplyPacket::new_checked(&reply[..]).unwrap();
        assert_eq!(
            CookieJar::default().consume_reply(Instant::ZERO, &remote, &p),
            Err(HandshakeError::UnexpectedCookie)
        );
    }
}
