//! `wire_parsers`: every parser of `kairos_core::wire` on the same bytes.
//!
//! The first input byte (modulo 8) may first shape the rest into a
//! well-framed message of one type ([`shape`]), so that the success paths are
//! as easy to reach as the error paths; every parser then sees the bytes:
//! `MessageType::of`, the `new_checked` / accessors / `Repr::parse` /
//! `Repr::emit` of initiations, responses, cookie replies and transport
//! headers, the setters, `ControlPacket`, `Payload::classify`, and
//! `discovery::AnnounceRepr::open` (with the fixture network's beacon key).
//!
//! Checks: each parser accepts exactly the framing its module documents and
//! reports the documented error otherwise; accessors read the documented
//! offsets; `emit` of a parsed `Repr` reproduces the input bytes (for
//! transport messages, the 16-byte header); `buffer_len` is the message
//! length; setters change only their field.

use kairos_core::discovery::{AnnounceError, AnnounceKind, AnnounceRepr, ANNOUNCE_LEN};
use kairos_core::identity::PublicIdentity;
use kairos_core::noise::Tai64N;
use kairos_core::wire::{
    ControlKind, ControlPacket, CookieReplyPacket, CookieReplyRepr, Error, InitiationPacket, InitiationRepr,
    MessageType, Payload, ResponsePacket, ResponseRepr, TransportPacket, TransportRepr, COOKIE_REPLY_LEN,
    INITIATION_LEN, MAC_LEN, RESPONSE_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD,
};

use crate::fixture::network;
use crate::Stats;

/// What the first byte (modulo 8) does to the rest before parsing.
pub mod shape {
    /// Nothing: the rest as it is.
    pub const RAW: u8 = 0;
    /// An initiation header, padded or cut to `INITIATION_LEN`.
    pub const INITIATION: u8 = 1;
    /// A response header, padded or cut to `RESPONSE_LEN`.
    pub const RESPONSE: u8 = 2;
    /// A cookie reply header, padded or cut to `COOKIE_REPLY_LEN`.
    pub const COOKIE_REPLY: u8 = 3;
    /// A transport header, padded to at least 32 bytes.
    pub const TRANSPORT: u8 = 4;
    /// A valid control kind byte in front (`0x01 + b % 0x3f`, `b` the first byte of the rest).
    pub const CONTROL: u8 = 5;
    /// Header bytes only: type from the rest's first byte (modulo 8),
    /// reserved bytes kept.
    pub const HEADER: u8 = 6;
    /// A discovery announcement sealed with the network's beacon key from
    /// the rest: kind byte (modulo 3), static key (32), signing key (32),
    /// timestamp (12), port (2, BE), nonce (24), zero-padded. It must open
    /// to what was sealed.
    pub const ANNOUNCE: u8 = 7;
}

fn framed(rest: &[u8], ty: u8, len: usize) -> Vec<u8> {
    let mut b = vec![ty, 0, 0, 0];
    b.extend_from_slice(rest);
    b.resize(len.max(4), 0);
    b
}

/// Runs one input. See the module docs.
pub fn run(data: &[u8]) -> Stats {
    let Some((&sel, rest)) = data.split_first() else {
        return Stats::default();
    };
    let b = match sel % 8 {
        shape::RAW => rest.to_vec(),
        shape::INITIATION => framed(rest, 1, INITIATION_LEN),
        shape::RESPONSE => framed(rest, 2, RESPONSE_LEN),
        shape::COOKIE_REPLY => framed(rest, 3, COOKIE_REPLY_LEN),
        shape::TRANSPORT => {
            let n = (rest.len() + 4).max(TRANSPORT_OVERHEAD);
            framed(rest, 4, n)
        }
        shape::CONTROL => {
            let mut b = rest.to_vec();
            if let Some(first) = b.first_mut() {
                *first = ControlKind::MIN + *first % ControlKind::MAX;
            }
            b
        }
        shape::HEADER => {
            let mut b = rest.to_vec();
            if let Some(first) = b.first_mut() {
                *first %= 8;
            }
            b
        }
        _ => announcement(rest),
    };
    let mut stats = Stats::default();
    parse_all(&b, &mut stats);
    stats
}

/// Seals an announcement from the fields in `rest` and checks it opens.
fn announcement(rest: &[u8]) -> Vec<u8> {
    let mut f = [0u8; 1 + 32 + 32 + 12 + 2 + 24];
    let n = rest.len().min(f.len());
    f[..n].copy_from_slice(&rest[..n]);
    let kind = [AnnounceKind::Beacon, AnnounceKind::Hello, AnnounceKind::HelloReply][usize::from(f[0] % 3)];
    let repr = AnnounceRepr {
        kind,
        identity: PublicIdentity {
            static_key: f[1..33].try_into().expect("32 bytes"),
            signing_key: f[33..65].try_into().expect("32 bytes"),
        },
        timestamp: Tai64N(f[65..77].try_into().expect("12 bytes")),
        port: u16::from_be_bytes([f[77], f[78]]),
    };
    let nonce: [u8; 24] = f[79..103].try_into().expect("24 bytes");
    let mut out = vec![0u8; ANNOUNCE_LEN];
    assert_eq!(repr.seal(&network().beacon_key, &nonce, &mut out), ANNOUNCE_LEN);
    assert_eq!(
        AnnounceRepr::open(&network().beacon_key, &out),
        Ok(repr),
        "announcement round trip"
    );
    out
}

/// The error `new_checked` of a fixed-length message of type `ty` must give.
fn expected_fixed(b: &[u8], ty: MessageType, len: usize) -> Result<(), Error> {
    match MessageType::of(b) {
        Err(e) => Err(e),
        Ok(t) if t != ty => Err(Error::UnknownType(b[0])),
        Ok(_) if b.len() < len => Err(Error::Truncated),
        Ok(_) if b.len() > len => Err(Error::TooLong),
        Ok(_) => Ok(()),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Feeds `b` to every parser and checks each against the documented layout.
pub fn parse_all(b: &[u8], stats: &mut Stats) {
    stats.fed += 1;

    // The header: length, reserved bytes, then the type byte, which names
    // the type of that number (1-4 are the tunnel's, later ones discovery's).
    let ty = MessageType::of(b);
    if b.len() < 4 {
        assert_eq!(ty, Err(Error::Truncated));
    } else if b[1..4] != [0, 0, 0] {
        assert_eq!(ty, Err(Error::Reserved));
    } else {
        match ty {
            Ok(t) => assert_eq!(t as u8, b[0]),
            Err(e) => {
                assert_eq!(e, Error::UnknownType(b[0]));
                assert!(!(1..=4).contains(&b[0]), "tunnel type {} refused", b[0]);
            }
        }
    }

    // Initiation.
    let p = InitiationPacket::new_checked(b);
    assert_eq!(
        p.as_ref().map(drop).map_err(|e| *e),
        expected_fixed(b, MessageType::Initiation, INITIATION_LEN)
    );
    if let Ok(p) = p {
        stats.accepted += 1;
        let (mac1, mac2) = (INITIATION_LEN - 2 * MAC_LEN, INITIATION_LEN - MAC_LEN);
        assert_eq!(p.sender_index(), le32(b, 4));
        assert_eq!(p.ephemeral()[..], b[8..40]);
        assert_eq!(p.encrypted_static(), &b[40..88]);
        assert_eq!(p.encrypted_payload(), &b[88..mac1]);
        assert_eq!(p.mac1()[..], b[mac1..mac2]);
        assert_eq!(p.mac2()[..], b[mac2..]);
        assert_eq!(p.mac1_input(), &b[..mac1]);
        assert_eq!(p.mac2_input(), &b[..mac2]);
        let repr = InitiationRepr::parse(&p).expect("a checked initiation parses");
        assert_eq!(repr.buffer_len(), INITIATION_LEN);
        let mut out = [0u8; INITIATION_LEN];
        repr.emit(&mut out);
        assert_eq!(&out[..], b, "initiation emit(parse(b)) != b");
        // The setters touch only their MAC.
        let mut copy = b.to_vec();
        let mut q = InitiationPacket::new_unchecked(&mut copy[..]);
        let (m1, m2) = (flip(p.mac1()), flip(p.mac2()));
        q.set_mac1(&m1);
        q.set_mac2(&m2);
        assert_eq!((q.mac1(), q.mac2()), (m1, m2));
        assert_eq!(&copy[..mac1], &b[..mac1]);
    } else if b.len() == INITIATION_LEN && ty == Ok(MessageType::Initiation) {
        panic!("a well-framed initiation was refused");
    }

    // Response.
    let p = ResponsePacket::new_checked(b);
    assert_eq!(
        p.as_ref().map(drop).map_err(|e| *e),
        expected_fixed(b, MessageType::Response, RESPONSE_LEN)
    );
    if let Ok(p) = p {
        stats.accepted += 1;
        let (mac1, mac2) = (RESPONSE_LEN - 2 * MAC_LEN, RESPONSE_LEN - MAC_LEN);
        assert_eq!(p.sender_index(), le32(b, 4));
        assert_eq!(p.receiver_index(), le32(b, 8));
        assert_eq!(p.ephemeral()[..], b[12..44]);
        assert_eq!(p.encrypted_payload(), &b[44..mac1]);
        assert_eq!(p.mac1()[..], b[mac1..mac2]);
        assert_eq!(p.mac2()[..], b[mac2..]);
        assert_eq!(p.mac1_input(), &b[..mac1]);
        assert_eq!(p.mac2_input(), &b[..mac2]);
        let repr = ResponseRepr::parse(&p).expect("a checked response parses");
        assert_eq!(repr.buffer_len(), RESPONSE_LEN);
        let mut out = [0u8; RESPONSE_LEN];
        repr.emit(&mut out);
        assert_eq!(&out[..], b, "response emit(parse(b)) != b");
        let mut copy = b.to_vec();
        let mut q = ResponsePacket::new_unchecked(&mut copy[..]);
        let (m1, m2) = (flip(p.mac1()), flip(p.mac2()));
        q.set_mac1(&m1);
        q.set_mac2(&m2);
        assert_eq!((q.mac1(), q.mac2()), (m1, m2));
        assert_eq!(&copy[..mac1], &b[..mac1]);
    }

    // Cookie reply.
    let p = CookieReplyPacket::new_checked(b);
    assert_eq!(
        p.as_ref().map(drop).map_err(|e| *e),
        expected_fixed(b, MessageType::CookieReply, COOKIE_REPLY_LEN)
    );
    if let Ok(p) = p {
        stats.accepted += 1;
        assert_eq!(p.receiver_index(), le32(b, 4));
        assert_eq!(p.nonce()[..], b[8..32]);
        assert_eq!(p.encrypted_cookie(), &b[32..64]);
        let repr = CookieReplyRepr::parse(&p).expect("a checked cookie reply parses");
        assert_eq!(repr.buffer_len(), COOKIE_REPLY_LEN);
        let mut out = [0u8; COOKIE_REPLY_LEN];
        repr.emit(&mut out);
        assert_eq!(&out[..], b, "cookie reply emit(parse(b)) != b");
    }

    // Transport header.
    let p = TransportPacket::new_checked(b);
    let want = match MessageType::of(b) {
        Err(e) => Err(e),
        Ok(MessageType::Transport) if b.len() < TRANSPORT_OVERHEAD => Err(Error::Truncated),
        Ok(MessageType::Transport) => Ok(()),
        Ok(_) => Err(Error::UnknownType(b[0])),
    };
    assert_eq!(p.as_ref().map(drop).map_err(|e| *e), want);
    if let Ok(p) = p {
        stats.accepted += 1;
        assert_eq!(p.receiver_index(), le32(b, 4));
        assert_eq!(p.counter(), u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")));
        assert_eq!(p.sealed(), &b[TRANSPORT_HEADER_LEN..]);
        let repr = TransportRepr::parse(&p).expect("a checked transport message parses");
        assert_eq!(repr.payload_len + TRANSPORT_OVERHEAD, b.len());
        assert_eq!(repr.buffer_len(), b.len());
        let mut out = b.to_vec();
        out[..TRANSPORT_HEADER_LEN].fill(0xa5);
        repr.emit(&mut out);
        assert_eq!(out, b, "transport emit(parse(b)) != b");
        let mut q = TransportPacket::new_unchecked(&mut out[..]);
        q.set_header(!repr.receiver_index, !repr.counter);
        assert_eq!((q.receiver_index(), q.counter()), (!repr.receiver_index, !repr.counter));
        assert_eq!(q.sealed_mut().len(), b.len() - TRANSPORT_HEADER_LEN);
        assert_eq!(&out[TRANSPORT_HEADER_LEN..], &b[TRANSPORT_HEADER_LEN..]);
        assert_eq!(
            TransportPacket::new_checked(&out[..]).map(|p| p.into_inner().len()),
            Ok(b.len())
        );
    }

    // Control envelope (the decrypted payload of a transport message).
    let p = ControlPacket::new_checked(b);
    match b.first() {
        None => assert_eq!(p.map(drop), Err(Error::Truncated)),
        Some(&k) if (ControlKind::MIN..=ControlKind::MAX).contains(&k) => {
            let p = p.expect("a control kind in range");
            stats.accepted += 1;
            assert_eq!(p.kind(), ControlKind(k));
            assert!(ControlKind::is_valid(k));
            assert!(k >> 4 != 4 && k >> 4 != 6, "a control kind that looks like IP");
            assert_eq!(p.payload(), &b[1..]);
            let mut copy = b.to_vec();
            let mut q = ControlPacket::new_unchecked(&mut copy[..]);
            q.set_kind(ControlKind::GOODBYE);
            assert_eq!(q.kind(), ControlKind::GOODBYE);
            assert_eq!(q.payload_mut().len(), b.len() - 1);
            assert_eq!(q.into_inner()[1..], b[1..]);
        }
        Some(&k) => {
            assert!(!ControlKind::is_valid(k));
            assert_eq!(p.map(drop), Err(Error::UnknownType(k)));
        }
    }

    // Discovery announcement, opened with the network's beacon key.
    let opened = AnnounceRepr::open(&network().beacon_key, b);
    let framing = match MessageType::of(b) {
        Err(e) => Err(e),
        Ok(MessageType::Beacon | MessageType::Hello | MessageType::HelloReply) if b.len() < ANNOUNCE_LEN => {
            Err(Error::Truncated)
        }
        Ok(MessageType::Beacon | MessageType::Hello | MessageType::HelloReply) if b.len() > ANNOUNCE_LEN => {
            Err(Error::TooLong)
        }
        Ok(MessageType::Beacon | MessageType::Hello | MessageType::HelloReply) => Ok(()),
        Ok(_) => Err(Error::UnknownType(b[0])),
    };
    match (framing, opened) {
        (Err(e), r) => assert_eq!(r, Err(AnnounceError::Malformed(e))),
        (Ok(()), Err(e)) => assert_eq!(e, AnnounceError::Decrypt),
        (Ok(()), Ok(repr)) => {
            // Only a member (or the corpus) seals one: it must re-seal to
            // the same header, nonce and keys.
            stats.accepted += 1;
            let mut out = [0u8; ANNOUNCE_LEN];
            let nonce: [u8; 24] = b[4..28].try_into().expect("24 bytes");
            assert_eq!(repr.seal(&network().beacon_key, &nonce, &mut out), ANNOUNCE_LEN);
            assert_eq!(out[..28], b[..28]);
            assert_eq!(AnnounceRepr::open(&network().beacon_key, &out), Ok(repr));
        }
    }

    // Payload classification.
    let c = Payload::classify(b);
    match (b.first(), c) {
        (None, Ok(Payload::Keepalive)) => {}
        (Some(&f), Ok(Payload::Ipv4(p))) => {
            assert!(f >> 4 == 4 && p == b);
            stats.accepted += 1;
        }
        (Some(&f), Ok(Payload::Ipv6(p))) => {
            assert!(f >> 4 == 6 && p == b);
            stats.accepted += 1;
        }
        (Some(&f), Ok(Payload::Control(k, p))) => {
            assert!(ControlKind::is_valid(f) && k == ControlKind(f) && p == &b[1..]);
        }
        (Some(&f), Err(e)) => {
            assert_eq!(e.0, f);
            assert!(f >> 4 != 4 && f >> 4 != 6 && !ControlKind::is_valid(f));
        }
        (first, c) => panic!("classify({first:?}...) = {c:?}"),
    }
}

fn flip(m: [u8; MAC_LEN]) -> [u8; MAC_LEN] {
    m.map(|x| !x)
}
