//! BLAKE2s hashing, keyed MACs, HMAC and the HKDF chain of the Noise
//! framework as WireGuard uses it, plus the handshake-time AEADs.
//!
//! Every function takes its input as a list of parts so callers never
//! concatenate into a temporary buffer.

use blake2::digest::{FixedOutput, Mac, Update};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
#[cfg(any(test, not(feature = "ring")))]
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::{ChaCha20Poly1305, Tag};
use hmac::SimpleHmac;

use super::{counter_nonce, OpenError, KEY_LEN, TAG_LEN};

/// `HASH(parts...)`: BLAKE2s-256 over the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// An incremental BLAKE2s-256, for inputs built piece by piece.
#[derive(Clone, Default)]
pub struct Hasher(Blake2s256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Blake2s256::default())
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        Update::update(&mut self.0, data);
    }
    /// The 32-byte digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize_fixed().into()
    }
}

/// `MAC(key, parts...)`: keyed BLAKE2s with a 16-byte output.
pub fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
        .expect("a 32-byte BLAKE2s key is valid");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// `HMAC(key, parts...)`: HMAC-BLAKE2s-256.
pub fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// `KDF1(key, input)`: the first HKDF output.
pub fn kdf1(key: &[u8; 32], input: &[u8]) -> [u8; 32] {
    let prk = hmac(key, &[input]);
    hmac(&prk, &[&[1]])
}

/// `KDF2(key, input)`: the first two HKDF outputs.
pub fn kdf2(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    (t1, t2)
}

/// `KDF3(key, input)`: the first three HKDF outputs.
pub fn kdf3(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let prk = hmac(key, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1, &[2]]);
    let t3 = hmac(&prk, &[&t2, &[3]]);
    (t1, t2, t3)
}

/// Handshake `AEAD(key, counter, plaintext, aad)`: writes the ciphertext and
/// its tag to `out`, which must be `plaintext.len() + 16` bytes.
pub fn aead_seal(key: &[u8; KEY_LEN], counter: u64, aad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(&counter_nonce(counter).into(), aad, body)
        .expect("handshake plaintext is short");
    tag_out[..TAG_LEN].copy_from_slice(&tag);
}

/// Opens a handshake AEAD: `sealed` is ciphertext then tag; the plaintext goes
/// to `out`, which must be `sealed.len() - 16` bytes.
pub fn aead_open(
    key: &[u8; KEY_LEN],
    counter: u64,
    aad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), OpenError> {
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    out.copy_from_slice(body);
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(&counter_nonce(counter).into(), aad, out, Tag::from_slice(tag))
        .map_err(|_| OpenError)
}

/// `XAEAD(key, nonce, plaintext, aad)` (XChaCha20-Poly1305), for cookies
/// and LAN announcements. `out` must be `plaintext.len() + 16` bytes.
pub fn xaead_seal(key: &[u8; KEY_LEN], nonce: &[u8; 24], aad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    #[cfg(feature = "ring")]
    let tag = ring_x::seal(key, nonce, aad, body);
    #[cfg(not(feature = "ring"))]
    let tag: [u8; TAG_LEN] = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(nonce.into(), aad, body)
        .expect("cookie plaintext is short")
        .into();
    tag_out[..TAG_LEN].copy_from_slice(&tag);
}

/// Opens an XAEAD box: `sealed` is ciphertext then tag; `out` must be
/// `sealed.len() - 16` bytes.
pub fn xaead_open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; 24],
    aad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), OpenError> {
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    out.copy_from_slice(body);
    #[cfg(feature = "ring")]
    return ring_x::open(key, nonce, aad, out, tag.try_into().expect("16 bytes"));
    #[cfg(not(feature = "ring"))]
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(nonce.into(), aad, out, Tag::from_slice(tag))
        .map_err(|_| OpenError)
}

/// XChaCha20-Poly1305 as its definition (draft-irtf-cfrg-xchacha) builds
/// it: HChaCha20 of the key and the nonce's first 16 bytes is the key of a
/// ChaCha20-Poly1305 whose nonce is four zero bytes then the last 8. The
/// AEAD is ring's: RustCrypto's Poly1305 sets up its AVX2 tables per
/// message, which costs more than the whole of a short one (about 1.9 us
/// against 0.2 for a LAN announcement, measured in the simulator, where a
/// 1000-node LAN opens a million of them as it starts).
#[cfg(feature = "ring")]
mod ring_x {
    use chacha20::cipher::consts::U10;
    use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

    use super::super::{OpenError, KEY_LEN, TAG_LEN};

    fn key_and_nonce(key: &[u8; KEY_LEN], nonce: &[u8; 24]) -> (LessSafeKey, Nonce) {
        let (head, tail) = nonce.split_at(16);
        let mut subkey: [u8; KEY_LEN] = chacha20::hchacha::<U10>(key.into(), head.into()).into();
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &subkey).expect("32-byte ChaCha20 key"));
        zeroize::Zeroize::zeroize(&mut subkey);
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(tail);
        (aead, Nonce::assume_unique_for_key(n))
    }

    pub(super) fn seal(key: &[u8; KEY_LEN], nonce: &[u8; 24], aad: &[u8], body: &mut [u8]) -> [u8; TAG_LEN] {
        let (aead, n) = key_and_nonce(key, nonce);
        let tag = aead
            .seal_in_place_separate_tag(n, Aad::from(aad), body)
            .expect("cookie plaintext is short");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    pub(super) fn open(
        key: &[u8; KEY_LEN],
        nonce: &[u8; 24],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let (aead, n) = key_and_nonce(key, nonce);
        aead.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), body, 0..)
            .map(|_| ())
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{AeadKey, CryptoProvider, RustCryptoProvider};

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s.replace([' ', '\n', ':'], "")).unwrap();
        v.try_into().unwrap()
    }

    /// RFC 7693 appendix B: BLAKE2s-256("abc").
    #[test]
    fn blake2s_rfc7693() {
        let want: [u8; 32] = unhex("508C5E8C327C14E2E1A72BA34EEB452F37458B209ED63A294D999B4C86675982");
        assert_eq!(hash(&[b"abc"]), want);
        assert_eq!(hash(&[b"a", b"", b"bc"]), want, "parts hash as their concatenation");
    }

    /// BLAKE2s keyed test vector (blake2s-kat.txt, empty input, key 00..1f,
    /// 32-byte output) checks the keyed mode that MAC builds on.
    #[test]
    fn blake2s_keyed_kat() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut m = <Blake2sMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut m, b"");
        let out: [u8; 32] = m.finalize().into_bytes().into();
        let want: [u8; 32] = unhex("48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49");
        assert_eq!(out, want);
    }

    /// RFC 8439 section 2.8.2: the AEAD test vector, through both the
    /// handshake helper and the provider's in-place key.
    #[test]
    fn chacha20poly1305_rfc8439() {
        let key: [u8; 32] = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce: [u8; 12] = unhex("070000004041424344454647");
        let aad: [u8; 12] = unhex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want_tag: [u8; 16] = unhex("1ae10b594f09e26a7e902ecbd0600691");
        let want_ct_start: [u8; 16] = unhex("d31a8d34648e60db7b86afbc53ef7ec2");

        let cipher = ChaCha20Poly1305::new((&key).into());
        let mut buf = *pt;
        let tag = cipher
            .encrypt_in_place_detached((&nonce).into(), &aad, &mut buf)
            .unwrap();
        assert_eq!(&buf[..16], &want_ct_start);
        assert_eq!(tag.as_slice(), &want_tag);

        // The RFC nonce is not a WireGuard counter nonce (its first four bytes
        // are not zero), so the provider is checked by round trip and against
        // the handshake helper, which shares the counter layout.
        let k = RustCryptoProvider::aead_key(&key);
        let mut a = *pt;
        let t = k.seal_in_place(7, &aad, &mut a);
        let mut b = [0u8; 114 + 16];
        aead_seal(&key, 7, &aad, pt, &mut b);
        assert_eq!(&b[..114], &a[..]);
        assert_eq!(&b[114..], &t);
        k.open_in_place(7, &aad, &mut a, &t).unwrap();
        assert_eq!(&a[..], &pt[..]);
    }

    #[test]
    fn tampering_fails_open() {
        let key = [9u8; 32];
        let mut sealed = [0u8; 5 + 16];
        aead_seal(&key, 1, b"ad", b"hello", &mut sealed);
        let mut out = [0u8; 5];
        aead_open(&key, 1, b"ad", &sealed, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed;
            bad[i] ^= 0x80;
            assert_eq!(aead_open(&key, 1, b"ad", &bad, &mut out), Err(OpenError));
        }
        assert_eq!(
            aead_open(&key, 2, b"ad", &sealed, &mut out),
            Err(OpenError),
            "wrong counter"
        );
        assert_eq!(
            aead_open(&key, 1, b"xx", &sealed, &mut out),
            Err(OpenError),
            "wrong aad"
        );

        let nonce = [3u8; 24];
        let mut xs = [0u8; 16 + 16];
        xaead_seal(&key, &nonce, b"ad", &[7u8; 16], &mut xs);
        let mut xo = [0u8; 16];
        xaead_open(&key, &nonce, b"ad", &xs, &mut xo).unwrap();
        assert_eq!(xo, [7u8; 16]);
        xs[0] ^= 1;
        assert!(xaead_open(&key, &nonce, b"ad", &xs, &mut xo).is_err());
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the XAEAD is
    /// XChaCha20-Poly1305, whichever AEAD builds it (ring with the `ring`
    /// feature, RustCrypto without).
    #[test]
    fn xaead_is_xchacha20_poly1305() {
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aad: [u8; 12] = unhex("50515253c0c1c2c3c4c5c6c7");
        let key: [u8; 32] = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce: [u8; 24] = unhex("404142434445464748494a4b4c4d4e4f5051525354555657");
        let want: [u8; 130] = unhex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa644\
             0bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e\
             3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e\
             c0875924c1c7987947deafd8780acf49",
        );
        let mut sealed = [0u8; 130];
        xaead_seal(&key, &nonce, &aad, plaintext, &mut sealed);
        assert_eq!(sealed, want);
        let mut opened = [0u8; 114];
        xaead_open(&key, &nonce, &aad, &sealed, &mut opened).unwrap();
        assert_eq!(&opened[..], &plaintext[..]);
        for i in [0, 113, 114, 129] {
            let mut bad = sealed;
            bad[i] ^= 0x80;
            assert!(
                xaead_open(&key, &nonce, &aad, &bad, &mut opened).is_err(),
                "byte {i} flipped"
            );
        }
        assert!(
            xaead_open(&key, &nonce, b"", &sealed, &mut opened).is_err(),
            "other aad"
        );
    }

    /// Every length a cookie or an announcement may have gives the same
    /// bytes as RustCrypto's XChaCha20-Poly1305.
    #[cfg(feature = "ring")]
    #[test]
    fn the_ring_xaead_matches_rustcrypto() {
        let key = [0x42u8; 32];
        let mut nonce = [0u8; 24];
        for len in 0..300usize {
            nonce[(len * 7) % 24] = len as u8;
            let plain: std::vec::Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let aad = &plain[..len.min(9)];
            let mut ours = std::vec![0u8; len + 16];
            xaead_seal(&key, &nonce, aad, &plain, &mut ours);
            let mut theirs = plain.clone();
            let tag = XChaCha20Poly1305::new((&key).into())
                .encrypt_in_place_detached((&nonce).into(), aad, &mut theirs)
                .unwrap();
            theirs.extend_from_slice(&tag);
            assert_eq!(ours, theirs, "length {len}");
        }
    }

    #[test]
    fn kdf_chain_is_hkdf() {
        let key = [1u8; 32];
        let (a, b, c) = kdf3(&key, b"input");
        let (a2, b2) = kdf2(&key, b"input");
        assert_eq!((a, b), (a2, b2));
        assert_eq!(kdf1(&key, b"input"), a);
        let prk = hmac(&key, &[b"input"]);
        assert_eq!(c, hmac(&prk, &[&b, &[3]]));
        assert_ne!(a, b);
    }

    #[cfg(feature = "ring")]
    #[test]
    fn ring_matches_rustcrypto() {
        use crate::crypto::RingProvider;
        let key = [0x42u8; 32];
        let r = RingProvider::aead_key(&key);
        let c = RustCryptoProvider::aead_key(&key);
        for len in [0usize, 1, 63, 64, 65, 1420] {
            let mut a = [0u8; 1420];
            for (i, x) in a.iter_mut().enumerate() {
                *x = i as u8;
            }
            let mut b = a;
            let ta = r.seal_in_place(99, b"hdr", &mut a[..len]);
            let tb = c.seal_in_place(99, b"hdr", &mut b[..len]);
            assert_eq!(ta, tb);
            assert_eq!(a[..len], b[..len]);
            r.open_in_place(99, b"hdr", &mut a[..len], &ta).unwrap();
            c.open_in_place(99, b"hdr", &mut b[..len], &tb).unwrap();
            assert_eq!(a[..len], b[..len]);
            let mut bad = ta;
            bad[0] ^= 1;
            assert!(r.open_in_place(99, b"hdr", &mut a[..len], &bad).is_err());
        }
    }
}
