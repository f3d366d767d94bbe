//! The Noise IKpsk2 handshake in WireGuard's construction.
//!
//! ```text
//! Initiator                                                Responder
//!   e, es, s, ss, {timestamp, signing key}  ──initiation──►
//!                                           ◄──response──  e, ee, se, psk, {signing key}
//! ```
//! One round trip. The payloads carry each side's Ed25519 signing key, so
//! both ends learn the other's whole identity, hence its node id. The PSK is derived from the network token, so only token
//! holders can complete it; MAC1 additionally mixes in a token-derived key, so
//! a responder drops a stranger's initiation before any Diffie-Hellman.
//!
//! The responder's work is split in two so a node can find the peer between
//! the steps: [`consume_initiation`] opens the initiator's static key with the
//! local keys alone; [`HalfInitiation::finish`] then checks it against that
//! peer's precomputed keys and opens the timestamp. Nothing here allocates,
//! reads a clock or draws randomness: ephemeral keys and indices come from
//! the caller's RNG.

use rand_core::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::keys::{dh, public_key};
use super::{HandshakeError, LocalKeys, RemoteKeys, Tai64N};
use crate::crypto::{aead_open, aead_seal, hash, kdf1, kdf2, kdf3, mac};
use crate::wire::{InitiationPacket, InitiationRepr, ResponsePacket, ResponseRepr};

/// The transport keys a completed handshake yields.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TransportKeys {
    /// Key for messages we send.
    pub send: [u8; 32],
    /// Key for messages we receive.
    pub recv: [u8; 32],
    /// Our session index (the peer puts it in messages to us).
    #[zeroize(skip)]
    pub local_index: u32,
    /// The peer's session index (we put it in messages to them).
    #[zeroize(skip)]
    pub remote_index: u32,
    /// Whether we initiated this handshake.
    #[zeroize(skip)]
    pub initiator: bool,
}

/// An initiator waiting for the response to its initiation.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct InitiatorState {
    chaining_key: [u8; 32],
    hash: [u8; 32],
    ephemeral: [u8; 32],
    #[zeroize(skip)]
    local_index: u32,
}

impl InitiatorState {
    /// The index the response must carry as its receiver.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }
}

fn random_secret(rng: &mut (impl RngCore + CryptoRng)) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

/// Builds an initiation to `remote` into `out[..INITIATION_LEN]` (MAC1 set,
/// MAC2 zero: the caller adds a cookie MAC when it holds one).
pub fn create_initiation(
    local: &LocalKeys,
    remote: &RemoteKeys,
    timestamp: Tai64N,
    local_index: u32,
    rng: &mut (impl RngCore + CryptoRng),
    out: &mut [u8],
) -> Result<InitiatorState, HandshakeError> {
    let mut c = remote.initial_chaining_key;
    let mut h = remote.initial_hash;

    let eph_bytes = random_secret(rng);
    let eph = StaticSecret::from(eph_bytes);
    let eph_pub = public_key(&eph);
    c = kdf1(&c, &eph_pub);
    h = hash(&[&h, &eph_pub]);

    let (c1, k) = kdf2(&c, &dh(&eph, &remote.public)?);
    c = c1;
    let mut encrypted_static = [0u8; 48];
    aead_seal(&k, 0, &h, &local.public, &mut encrypted_static);
    h = hash(&[&h, &encrypted_static]);

    let (c2, k) = kdf2(&c, &remote.static_static);
    c = c2;
    let mut payload = [0u8; 44];
    payload[..12].copy_from_slice(&timestamp.0);
    payload[12..].copy_from_slice(&local.signing_public);
    let mut encrypted_payload = [0u8; 60];
    aead_seal(&k, 0, &h, &payload, &mut encrypted_payload);
    h = hash(&[&h, &encrypted_payload]);

    let repr = InitiationRepr {
        sender_index: local_index,
        ephemeral: eph_pub,
        encrypted_static,
        encrypted_payload,
        mac1: [0; 16],
        mac2: [0; 16],
    };
    repr.emit(out);
    let mut p = InitiationPacket::new_unchecked(&mut out[..repr.buffer_len()]);
    let m1 = mac(&remote.mac1_key, &[p.mac1_input()]);
    p.set_mac1(&m1);

    Ok(InitiatorState {
        chaining_key: c,
        hash: h,
        ephemeral: eph_bytes,
        local_index,
    })
}

/// What an authenticated initiation's payload said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// When the initiator sent it (replay protection).
    pub timestamp: Tai64N,
    /// The initiator's Ed25519 signing key.
    pub signing_key: [u8; 32],
}

/// A responder's state after opening the initiator's static key, before it
/// knows whether that key is a peer it accepts.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct HalfInitiation {
    chaining_key: [u8; 32],
    hash: [u8; 32],
    #[zeroize(skip)]
    initiator_static: [u8; 32],
    #[zeroize(skip)]
    initiator_ephemeral: [u8; 32],
    #[zeroize(skip)]
    initiator_index: u32,
    #[zeroize(skip)]
    encrypted_payload: [u8; 60],
}

impl HalfInitiation {
    /// The initiator's static public key: who claims to be calling.
    pub fn initiator_static(&self) -> &[u8; 32] {
        &self.initiator_static
    }

    /// The initiator's session index.
    pub fn initiator_index(&self) -> u32 {
        self.initiator_index
    }

    /// Authenticates the initiator with its precomputed keys and opens the
    /// payload. `remote` must be the keys of [`Self::initiator_static`].
    pub fn finish(mut self, remote: &RemoteKeys) -> Result<(ResponderState, Opened), HandshakeError> {
        if remote.public != self.initiator_static {
            return Err(HandshakeError::UnknownPeer);
        }
        let (c, k) = kdf2(&self.chaining_key, &remote.static_static);
        let mut payload = [0u8; 44];
        aead_open(&k, 0, &self.hash, &self.encrypted_payload, &mut payload).map_err(|_| HandshakeError::Decrypt)?;
        let h = hash(&[&self.hash, &self.encrypted_payload]);
        self.chaining_key.zeroize();
        let state = ResponderState {
            chaining_key: c,
            hash: h,
            initiator_ephemeral: self.initiator_ephemeral,
            initiator_index: self.initiator_index,
        };
        let opened = Opened {
            timestamp: Tai64N(crate::wire::array(&payload, 0)),
            signing_key: crate::wire::array(&payload, 12),
        };
        Ok((state, opened))
    }
}

/// Opens the static key of an initiation addressed to the local node. MAC1
/// must already have been checked (see [`super::Admission`]).
pub fn consume_initiation<T: AsRef<[u8]>>(
    local: &LocalKeys,
    packet: &InitiationPacket<T>,
) -> Result<HalfInitiation, HandshakeError> {
    let mut c = local.initial_chaining_key;
    let mut h = local.initial_hash;
    let e_i = packet.ephemeral();
    c = kdf1(&c, &e_i);
    h = hash(&[&h, &e_i]);
    let (c1, k) = kdf2(&c, &dh(&local.secret, &e_i)?);
    c = c1;
    let mut initiator_static = [0u8; 32];
    aead_open(&k, 0, &h, packet.encrypted_static(), &mut initiator_static).map_err(|_| HandshakeError::Decrypt)?;
    h = hash(&[&h, packet.encrypted_static()]);
    let mut encrypted_payload = [0u8; 60];
    encrypted_payload.copy_from_slice(packet.encrypted_payload());
    Ok(HalfInitiation {
        chaining_key: c,
        hash: h,
        initiator_static,
        initiator_ephemeral: e_i,
        initiator_index: packet.sender_index(),
        encrypted_payload,
    })
}

/// A responder that has authenticated an initiation and may answer it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ResponderState {
    chaining_key: [u8; 32],
    hash: [u8; 32],
    #[zeroize(skip)]
    initiator_ephemeral: [u8; 32],
    #[zeroize(skip)]
    initiator_index: u32,
}

impl ResponderState {
    /// Writes the response into `out[..RESPONSE_LEN]` (MAC1 set, MAC2 zero)
    /// and returns the session's transport keys. The response's payload is
    /// the local signing key.
    pub fn respond(
        mut self,
        local: &LocalKeys,
        remote: &RemoteKeys,
        local_index: u32,
        rng: &mut (impl RngCore + CryptoRng),
        out: &mut [u8],
    ) -> Result<TransportKeys, HandshakeError> {
        let mut c = self.chaining_key;
        let mut h = self.hash;
        let eph = StaticSecret::from(random_secret(rng));
        let eph_pub = public_key(&eph);
        c = kdf1(&c, &eph_pub);
        h = hash(&[&h, &eph_pub]);
        c = kdf1(&c, &dh(&eph, &self.initiator_ephemeral)?);
        c = kdf1(&c, &dh(&eph, &remote.public)?);
        let (c3, t, k) = kdf3(&c, &local.psk);
        c = c3;
        h = hash(&[&h, &t]);
        let mut encrypted_payload = [0u8; 48];
        aead_seal(&k, 0, &h, &local.signing_public, &mut encrypted_payload);

        let repr = ResponseRepr {
            sender_index: local_index,
            receiver_index: self.initiator_index,
            ephemeral: eph_pub,
            encrypted_payload,
            mac1: [0; 16],
            mac2: [0; 16],
        };
        repr.emit(out);
        let mut p = ResponsePacket::new_unchecked(&mut out[..repr.buffer_len()]);
        let m1 = mac(&remote.mac1_key, &[p.mac1_input()]);
        p.set_mac1(&m1);

        let (recv, send) = kdf2(&c, &[]);
        self.chaining_key.zeroize();
        c.zeroize();
        Ok(TransportKeys {
            send,
            recv,
            local_index,
            remote_index: self.initiator_index,
            initiator: false,
        })
    }
}

impl InitiatorState {
    /// Completes the handshake with the peer's response. MAC1 must already
    /// have been checked. Returns the transport keys and the responder's
    /// signing key.
    pub fn consume_response<T: AsRef<[u8]>>(
        &self,
        local: &LocalKeys,
        packet: &ResponsePacket<T>,
    ) -> Result<(TransportKeys, [u8; 32]), HandshakeError> {
        if packet.receiver_index() != self.local_index {
            return Err(HandshakeError::UnknownIndex);
        }
        let eph = StaticSecret::from(self.ephemeral);
        let mut c = self.chaining_key;
        let mut h = self.hash;
        let e_r = packet.ephemeral();
        c = kdf1(&c, &e_r);
        h = hash(&[&h, &e_r]);
        c = kdf1(&c, &dh(&eph, &e_r)?);
        c = kdf1(&c, &dh(&local.secret, &e_r)?);
        let (c3, t, k) = kdf3(&c, &local.psk);
        c = c3;
        h = hash(&[&h, &t]);
        let mut signing_key = [0u8; 32];
        aead_open(&k, 0, &h, packet.encrypted_payload(), &mut signing_key).map_err(|_| HandshakeError::Decrypt)?;
        let (send, recv) = kdf2(&c, &[]);
        c.zeroize();
        let keys = TransportKeys {
            send,
            recv,
            local_index: self.local_index,
            remote_index: packet.sender_index(),
            initiator: true,
        };
        Ok((keys, signing_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::token::NetworkKeys;
    use crate::wire::{INITIATION_LEN, RESPONSE_LEN};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn keys(seed: u8, secret: u8) -> LocalKeys {
        LocalKeys::new(&Identity::from_bytes(&[seed; 64]), &NetworkKeys::derive(&[secret; 32]))
    }

    fn handshake(
        a: &LocalKeys,
        b: &LocalKeys,
        rng: &mut ChaCha20Rng,
    ) -> Result<([u8; INITIATION_LEN], [u8; RESPONSE_LEN], TransportKeys, TransportKeys), HandshakeError> {
        let a_sees_b = RemoteKeys::new(a, b.public())?;
        let b_sees_a = RemoteKeys::new(b, a.public())?;
        let mut init = [0u8; INITIATION_LEN];
        let ts = Tai64N::from_unix(crate::time::Duration::from_secs(1_800_000_000));
        let st = create_initiation(a, &a_sees_b, ts, 0x11, rng, &mut init)?;
        let half = consume_initiation(b, &InitiationPacket::new_checked(&init[..]).unwrap())?;
        assert_eq!(half.initiator_static(), a.public());
        let (resp_state, opened) = half.finish(&b_sees_a)?;
        assert_eq!(opened.timestamp, ts);
        assert_eq!(
            opened.signing_key, a.signing_public,
            "the responder learns the initiator's signing key"
        );
        let mut resp = [0u8; RESPONSE_LEN];
        let kb = resp_state.respond(b, &b_sees_a, 0x22, rng, &mut resp)?;
        let (ka, b_signing) = st.consume_response(a, &ResponsePacket::new_checked(&resp[..]).unwrap())?;
        assert_eq!(
            b_signing, b.signing_public,
            "the initiator learns the responder's signing key"
        );
        Ok((init, resp, ka, kb))
    }

    #[test]
    fn both_ends_derive_matching_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (_, _, ka, kb) = handshake(&keys(1, 9), &keys(2, 9), &mut rng).unwrap();
        assert_eq!(ka.send, kb.recv);
        assert_eq!(ka.recv, kb.send);
        assert_ne!(ka.send, ka.recv);
        assert_eq!((ka.local_index, ka.remote_index), (0x11, 0x22));
        assert_eq!((kb.local_index, kb.remote_index), (0x22, 0x11));
        assert!(ka.initiator && !kb.initiator);
    }

    /// A recorded transcript from fixed keys and a fixed RNG. If this changes,
    /// the wire protocol changed: old and new nodes would not interoperate.
    #[test]
    fn transcript_is_stable() {
        // Fixed network keys, so the token's KDF is pinned by its own test.
        let net = NetworkKeys {
            psk: [9; 32],
            mac_key: [8; 32],
            beacon_key: [7; 32],
            network_id: crate::token::NetworkId([6; 16]),
        };
        let a = LocalKeys::new(&Identity::from_bytes(&[1; 64]), &net);
        let b = LocalKeys::new(&Identity::from_bytes(&[2; 64]), &net);
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let (init, resp, ka, _) = handshake(&a, &b, &mut rng).unwrap();
        let digest = hash(&[&init, &resp, &ka.send, &ka.recv]);
        assert_eq!(
            hex::encode(digest),
            "d2bd2edf35b78df28b89049ea3dbc97bc00a4bf95a9be2be447f4e2ee2ae2bdf",
            "handshake transcript changed"
        );
    }

    #[test]
    fn wrong_network_secret_cannot_finish() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        // Same identities, different tokens: the PSK differs, so the
        // initiator cannot open the response.
        let a = keys(1, 9);
        let b = keys(2, 8);
        assert_eq!(handshake(&a, &b, &mut rng).err(), Some(HandshakeError::Decrypt));
    }

    #[test]
    fn initiation_for_someone_else_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = keys(1, 9);
        let b = keys(2, 9);
        let c = keys(3, 9);
        let a_sees_b = RemoteKeys::new(&a, b.public()).unwrap();
        let mut init = [0u8; INITIATION_LEN];
        create_initiation(&a, &a_sees_b, Tai64N::ZERO, 1, &mut rng, &mut init).unwrap();
        let p = InitiationPacket::new_checked(&init[..]).unwrap();
        assert_eq!(consume_initiation(&c, &p).err(), Some(HandshakeError::Decrypt));
        // B opens it, but C's keys are not A's.
        let half = consume_initiation(&b, &p).unwrap();
        let b_sees_c = RemoteKeys::new(&b, c.public()).unwrap();
        assert_eq!(half.finish(&b_sees_c).err(), Some(HandshakeError::UnknownPeer));
    }

    #[test]
    fn low_order_keys_are_refused() {
        let a = keys(1, 9);
        assert_eq!(RemoteKeys::new(&a, &[0u8; 32]).err(), Some(HandshakeError::LowOrderKey));
    }
}
