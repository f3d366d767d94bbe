//! The default, pure-Rust transport AEAD (RustCrypto `chacha20poly1305`).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag};

use super::{counter_nonce, AeadKey, CryptoProvider, OpenError, KEY_LEN, TAG_LEN};

/// The RustCrypto provider: portable, constant time, no_std.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoProvider;

/// An expanded RustCrypto ChaCha20-Poly1305 key (zeroized on drop).
pub struct RustCryptoKey(ChaCha20Poly1305);

impl CryptoProvider for RustCryptoProvider {
    type Key = RustCryptoKey;

    fn aead_key(key: &[u8; KEY_LEN]) -> RustCryptoKey {
        RustCryptoKey(ChaCha20Poly1305::new(key.into()))
    }
}

impl AeadKey for RustCryptoKey {
    #[inline]
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .encrypt_in_place_detached(&counter_nonce(counter).into(), aad, buf)
            // Only fails for buffers over 256 GiB, which no packet is.
            .expect("ChaCha20-Poly1305 plaintext too long");
        tag.into()
    }

    #[inline]
    fn open_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), OpenError> {
        self.0
            .decrypt_in_place_detached(&counter_nonce(counter).into(), aad, buf, Tag::from_slice(tag))
            .map_err(|_| OpenError)
    }
}
