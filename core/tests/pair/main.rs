//! Two tunnels in memory under virtual time: the handshake, data both ways,
//! WireGuard's timers, and every kind of bad input dropped with a typed
//! reason. Each test runs with the RustCrypto provider, and with ring when
//! the `ring` feature is on.

mod harness;

use harness::{ip_packet, network, Pair, Side};
use kairos_core::crypto::{CryptoProvider, RustCryptoProvider};
use kairos_core::noise::HandshakeError;
use kairos_core::session::timers::{REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT};
use kairos_core::session::{DropReason, TunnelConfig, TunnelEvent};
use kairos_core::time::{Duration, Instant};
use kairos_core::wire::MessageType;

/// Runs a test body with every provider compiled in.
macro_rules! providers {
    ($($name:ident),* $(,)?) => {
        mod rustcrypto {
            $(#[test] fn $name() { super::$name::<kairos_core::crypto::RustCryptoProvider>(); })*
        }
        #[cfg(feature = "ring")]
        mod ring {
            $(#[test] fn $name() { super::$name::<kairos_core::crypto::RingProvider>(); })*
        }
    };
}

providers!(
    handshake_then_data_both_ways,
    rekey_after_120_seconds_keeps_data_flowing,
    sessions_expire_after_180_seconds,
    passive_keepalive_after_10_seconds,
    persistent_keepalive_keeps_sending,
    lost_initiation_is_retried,
    handshake_gives_up_after_90_seconds,
    replayed_packet_is_dropped,
    tampered_bytes_are_dropped,
    wrong_token_never_connects,
    replayed_initiation_is_dropped,
    unknown_index_is_dropped,
    cookie_reply_under_load_then_handshake,
    simultaneous_initiation_converges,
);

fn connected<P: CryptoProvider>() -> Pair<P> {
    let mut pair = Pair::<P>::new();
    assert_eq!(pair.send(Side::A, &ip_packet(1, 60)), Err(DropReason::NoSession));
    pair.drive();
    assert!(pair.a.tunnel.is_established(pair.now));
    assert!(
        pair.b.tunnel.is_established(pair.now),
        "the initiator's keepalive confirms the session"
    );
    pair
}

fn handshake_then_data_both_ways<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    assert_eq!(pair.a.events, [TunnelEvent::Established { initiator: true }]);
    assert_eq!(pair.b.events, [TunnelEvent::Established { initiator: false }]);
    assert_eq!(pair.sent_of(Side::B, MessageType::Initiation).len(), 1);
    assert_eq!(pair.sent_of(Side::A, MessageType::Response).len(), 1);

    for (i, len) in [20usize, 64, 512, 1420].into_iter().enumerate() {
        let p = ip_packet(i as u8 + 10, len);
        pair.send(Side::A, &p).unwrap();
        let q = ip_packet(i as u8 + 100, len);
        pair.send(Side::B, &q).unwrap();
        pair.drive();
        assert_eq!(pair.b.delivered.last(), Some(&p));
        assert_eq!(pair.a.delivered.last(), Some(&q));
    }
    assert_eq!(pair.a.drops, []);
    assert_eq!(pair.b.drops, []);
    let s = pair.a.tunnel.stats();
    assert_eq!(s.handshakes, 1);
    assert_eq!(s.rx_packets, 4);
    assert_eq!(s.rx_bytes, 20 + 64 + 512 + 1420);
}

fn rekey_after_120_seconds_keeps_data_flowing<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    let start = pair.now;
    let mut sent = 0;
    // Data both ways every 5 s for 300 s: never lost, even across rekeys.
    while pair.now < start + Duration::from_secs(300) {
        pair.advance(Duration::from_secs(5));
        for side in [Side::A, Side::B] {
            let p = ip_packet(sent as u8, 100);
            match pair.send(side, &p) {
                Ok(()) => sent += 1,
                Err(e) => panic!("send failed at {:?}: {e}", pair.now - start),
            }
        }
        pair.drive();
    }
    assert_eq!(pair.a.delivered.len() + pair.b.delivered.len(), sent);
    let handshakes = pair.a.tunnel.stats().handshakes;
    // One handshake at the start, then one per REKEY_AFTER_TIME of sending.
    assert!(handshakes >= 3, "expected rekeys, saw {handshakes} handshakes");
    let first_rekey = pair.a.tunnel.stats().last_handshake.unwrap();
    assert!(first_rekey > start + REKEY_AFTER_TIME);
    assert_eq!(pair.a.drops, []);
    assert_eq!(pair.b.drops, []);
}

fn sessions_expire_after_180_seconds<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    let start = pair.now;
    pair.advance(REJECT_AFTER_TIME - Duration::from_millis(1));
    assert!(pair.a.tunnel.is_established(pair.now));
    pair.advance(Duration::from_millis(1));
    assert!(!pair.a.tunnel.is_established(pair.now));
    assert!(!pair.b.tunnel.is_established(pair.now));
    assert!(pair.a.events.contains(&TunnelEvent::Expired));
    assert!(pair.b.events.contains(&TunnelEvent::Expired));
    assert_eq!(pair.now - start, REJECT_AFTER_TIME);
    // Idle until then: no handshake was needed (nothing was sent).
    assert_eq!(pair.sent_of(Side::B, MessageType::Initiation).len(), 1);
    // The next packet starts a new handshake and then goes through.
    assert_eq!(pair.send(Side::A, &ip_packet(5, 40)), Err(DropReason::NoSession));
    pair.drive();
    pair.send(Side::A, &ip_packet(5, 40)).unwrap();
    pair.drive();
    assert_eq!(pair.b.delivered, [ip_packet(5, 40)]);
}

fn passive_keepalive_after_10_seconds<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    let keepalives_before = pair.a.keepalives;
    pair.send(Side::A, &ip_packet(1, 40)).unwrap();
    pair.drive();
    // B has received data and sends nothing back: after 10 s it must.
    pair.advance(Duration::from_millis(9_999));
    assert_eq!(pair.a.keepalives, keepalives_before);
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.a.keepalives, keepalives_before + 1);
    // And only once: nothing more arrives, so nothing more is owed.
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.a.keepalives, keepalives_before + 1);
}

fn persistent_keepalive_keeps_sending<P: CryptoProvider>() {
    let config = {
        let mut c = TunnelConfig::default();
        c.persistent_keepalive = Some(Duration::from_secs(25));
        c
    };
    let mut pair = Pair::<P>::with_networks(&network(1), &network(1), config);
    pair.a.tunnel.connect();
    pair.drive();
    let before = pair.b.keepalives;
    pair.advance(Duration::from_secs(100));
    assert!(
        pair.b.keepalives >= before + 4,
        "{} keepalives",
        pair.b.keepalives - before
    );
}

fn lost_initiation_is_retried<P: CryptoProvider>() {
    let mut pair = Pair::<P>::new();
    let mut dropped = 0;
    pair.filter = Some(Box::new(move |_, m| {
        if MessageType::of(m) == Ok(MessageType::Initiation) && dropped == 0 {
            dropped += 1;
            return false;
        }
        true
    }));
    let start = pair.now;
    pair.a.tunnel.connect();
    pair.drive();
    assert!(!pair.a.tunnel.is_established(pair.now));
    pair.advance(REKEY_TIMEOUT + Duration::from_millis(333));
    assert!(pair.a.tunnel.is_established(pair.now));
    let done = pair.a.tunnel.stats().last_handshake.unwrap();
    assert!(done >= start + REKEY_TIMEOUT, "retry waits REKEY_TIMEOUT");
    assert_eq!(pair.sent_of(Side::B, MessageType::Initiation).len(), 2);
}

fn handshake_gives_up_after_90_seconds<P: CryptoProvider>() {
    let mut pair = Pair::<P>::new();
    pair.filter = Some(Box::new(|_, _| false));
    pair.a.tunnel.connect();
    pair.advance(REKEY_ATTEMPT_TIME + Duration::from_secs(10));
    assert!(pair.a.events.contains(&TunnelEvent::HandshakeFailed));
    let tries = pair.sent_of(Side::B, MessageType::Initiation).len();
    // One every 5 s to 5.333 s over 90 s.
    assert!((16..=19).contains(&tries), "{tries} initiations");
    // Then it stays quiet until asked again.
    pair.advance(Duration::from_secs(300));
    assert_eq!(pair.sent_of(Side::B, MessageType::Initiation).len(), tries);
}

fn replayed_packet_is_dropped<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    pair.send(Side::A, &ip_packet(7, 80)).unwrap();
    let msg = pair.wire.back().unwrap().1.clone();
    pair.drive();
    assert_eq!(pair.b.delivered.len(), 1);
    assert_eq!(pair.inject(Side::B, msg), Err(DropReason::Replayed));
    assert_eq!(pair.b.delivered.len(), 1);
}

fn tampered_bytes_are_dropped<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    pair.send(Side::A, &ip_packet(7, 80)).unwrap();
    let (_, msg) = pair.wire.pop_back().unwrap();
    for i in 0..msg.len() {
        let mut bad = msg.clone();
        bad[i] ^= 0x01;
        let r = pair.inject(Side::B, bad);
        let want_ok = matches!(
            r,
            Err(DropReason::Decrypt)
                | Err(DropReason::UnknownIndex)
                | Err(DropReason::Malformed(_))
                | Err(DropReason::TooOld)
                | Err(DropReason::Replayed)
        );
        assert!(want_ok, "byte {i}: {r:?}");
    }
    // Truncations too.
    for n in 0..msg.len() {
        assert!(pair.inject(Side::B, msg[..n].to_vec()).is_err(), "truncated to {n}");
    }
    assert!(pair.b.delivered.is_empty());
    // The untouched packet still goes through: forgeries moved no state.
    pair.inject(Side::B, msg).unwrap();
    assert_eq!(pair.b.delivered.len(), 1);

    // Tampered handshake messages: every byte.
    let mut fresh = Pair::<P>::new();
    fresh.filter = Some(Box::new(|_, _| false));
    fresh.a.tunnel.connect();
    fresh.drive();
    let init = fresh.sent_of(Side::B, MessageType::Initiation)[0].clone();
    // (MAC2, the last 16 bytes, only matters under load; the cookie test
    // covers it.)
    for i in 0..init.len() - 16 {
        let mut bad = init.clone();
        bad[i] ^= 0x80;
        let r = fresh.inject(Side::B, bad);
        assert!(
            matches!(r, Err(DropReason::BadMac1) | Err(DropReason::Malformed(_))),
            "initiation byte {i}: {r:?}"
        );
    }
    fresh.inject(Side::B, init).unwrap();
}

fn wrong_token_never_connects<P: CryptoProvider>() {
    let mut pair = Pair::<P>::with_networks(&network(1), &network(2), TunnelConfig::default());
    pair.a.tunnel.connect();
    pair.advance(REKEY_ATTEMPT_TIME + Duration::from_secs(1));
    assert!(!pair.a.tunnel.is_established(pair.now));
    assert!(!pair.b.tunnel.is_established(pair.now));
    assert!(!pair.b.drops.is_empty());
    assert!(
        pair.b.drops.iter().all(|d| *d == DropReason::BadMac1),
        "{:?}",
        pair.b.drops
    );
    assert_eq!(
        pair.sent_of(Side::A, MessageType::Response).len(),
        0,
        "B never answered"
    );
    assert!(pair.a.events.contains(&TunnelEvent::HandshakeFailed));
}

fn replayed_initiation_is_dropped<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    let init = pair.sent_of(Side::B, MessageType::Initiation)[0].clone();
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.inject(Side::B, init), Err(DropReason::ReplayedInitiation));
    // B's session is untouched.
    pair.send(Side::A, &ip_packet(3, 30)).unwrap();
    pair.drive();
    assert_eq!(pair.b.delivered.len(), 1);
}

fn unknown_index_is_dropped<P: CryptoProvider>() {
    let mut pair = connected::<P>();
    pair.send(Side::A, &ip_packet(7, 80)).unwrap();
    let (_, mut msg) = pair.wire.pop_back().unwrap();
    msg[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    assert_eq!(pair.inject(Side::B, msg), Err(DropReason::UnknownIndex));
    // A response nobody asked for.
    let resp = pair.sent_of(Side::A, MessageType::Response)[0].clone();
    assert_eq!(pair.inject(Side::A, resp), Err(DropReason::UnknownIndex));
}

fn cookie_reply_under_load_then_handshake<P: CryptoProvider>() {
    use kairos_core::noise::Admission;
    // B is under load: the first initiation gets a cookie reply, and the
    // immediate retry carries MAC2 and is admitted.
    let mut pair = Pair::<P>::new();
    pair.b.local.admission = Admission::new(0);
    pair.a.tunnel.connect();
    pair.drive();
    assert_eq!(pair.sent_of(Side::A, MessageType::CookieReply).len(), 1);
    assert_eq!(pair.sent_of(Side::B, MessageType::Initiation).len(), 2);
    assert!(pair.a.tunnel.is_established(pair.now));
    assert!(pair.b.tunnel.is_established(pair.now));

    // Both under load: B's response also needs a cookie from A, so one more
    // retry (after REKEY_TIMEOUT) completes it.
    let mut pair = Pair::<P>::new();
    pair.a.local.admission = Admission::new(0);
    pair.b.local.admission = Admission::new(0);
    pair.a.tunnel.connect();
    pair.drive();
    assert!(!pair.a.tunnel.is_established(pair.now));
    pair.advance(REKEY_TIMEOUT + Duration::from_millis(333));
    assert!(
        pair.a.tunnel.is_established(pair.now),
        "drops: {:?} / {:?}",
        pair.a.drops,
        pair.b.drops
    );
    assert_eq!(pair.sent_of(Side::B, MessageType::CookieReply).len(), 1);
}

fn simultaneous_initiation_converges<P: CryptoProvider>() {
    let mut pair = Pair::<P>::new();
    pair.a.tunnel.connect();
    pair.b.tunnel.connect();
    pair.drive();
    pair.advance(Duration::from_secs(1));
    pair.send(Side::A, &ip_packet(1, 50)).unwrap();
    pair.send(Side::B, &ip_packet(2, 50)).unwrap();
    pair.drive();
    assert_eq!(pair.b.delivered, [ip_packet(1, 50)]);
    assert_eq!(pair.a.delivered, [ip_packet(2, 50)]);
}

#[test]
fn wrong_token_is_a_typed_handshake_error_too() {
    // Same token for MAC1 but a different PSK cannot happen with real
    // tokens; check the layer below refuses it anyway.
    assert_eq!(
        format!("{}", DropReason::Handshake(HandshakeError::Decrypt)),
        "handshake refused: handshake did not authenticate (wrong token or tampered)"
    );
    let _ = (Instant::ZERO, RustCryptoProvider);
}

/// Found by the `transport_decrypt` fuzz target: a payload length near
/// `usize::MAX` overflowed the length check. Every length must be refused
/// cleanly.
#[test]
fn absurd_payload_lengths_are_refused() {
    let mut pair = connected::<RustCryptoProvider>();
    let now = pair.now;
    let mut buf = [0u8; 64];
    for len in [usize::MAX, usize::MAX - 31, usize::MAX - 32, 33, 64] {
        assert_eq!(
            pair.a.tunnel.encapsulate(now, &mut buf, len).err(),
            Some(DropReason::BufferTooSmall),
            "{len}"
        );
    }
    assert!(pair.a.tunnel.encapsulate(now, &mut buf, 32).is_ok());
}
