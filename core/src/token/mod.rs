//! The network token: the one secret every member of a mesh shares, and the
//! keys derived from it.
//!
//! A [`NetworkToken`] is 32 bytes of network secret, a version, and optional
//! hints: up to [`MAX_BOOTSTRAP`] bootstrap endpoints and an overlay IPv4
//! range. Its text form is `kairos_` followed by base64url (no padding) of
//!
//! ```text
//! version (1 byte, 0x01) | secret (32 bytes) | fields (type, length, value)* | checksum (4 bytes)
//! ```
//!
//! where the checksum is the first 4 bytes of a labelled BLAKE2s-256 of
//! everything before it. The byte layout and field types are documented in
//! `binary.rs` and in `docs/token.md`; the text rules (prefix, whitespace,
//! alphabets) in `text.rs`.
//!
//! Tokens made by EdgeVPN or an older Kairos (base64 of a YAML document) are
//! read too: their secret material is hashed into a network secret (see
//! `legacy.rs`), so an existing config keeps working. Such a token reports
//! [`TokenVersion::Legacy`] and encodes as the equivalent version-1 token.
//!
//! The secret is used only to derive [`NetworkKeys`]; it never goes on the
//! wire, never appears in `Debug` output, and is zeroized on drop. This
//! module never allocates: decoding uses a bounded stack buffer.

mod binary;
mod error;
mod keys;
mod legacy;
mod overlay;
mod text;

use core::fmt;
use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use error::{BootstrapError, EncodeError, FieldProblem, TokenError};
pub use keys::{NetworkId, NetworkKeys};
pub use overlay::{OverlayRange, OverlayRangeError};
pub use text::{DECODE_BUF_LEN, MAX_ENCODED_LEN, PREFIX};

/// The most bootstrap endpoints a token carries.
pub const MAX_BOOTSTRAP: usize = 8;

/// The format a token was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenVersion {
    /// The binary layout, version byte 0x01 (what this build writes).
    V1,
    /// An EdgeVPN or older Kairos token (base64 YAML).
    Legacy,
}

impl fmt::Display for TokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenVersion::V1 => "1",
            TokenVersion::Legacy => "legacy EdgeVPN/Kairos",
        })
    }
}

/// A network token: the shared secret of a mesh plus optional hints.
///
/// Equality compares the secret in constant time, then the hints and version.
#[derive(Clone)]
pub struct NetworkToken {
    secret: [u8; 32],
    version: TokenVersion,
    bootstrap: heapless::Vec<SocketAddr, MAX_BOOTSTRAP>,
    overlay: Option<OverlayRange>,
}

impl NetworkToken {
    /// A new token with a fresh secret from `rng` and no hints.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> NetworkToken {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let token = NetworkToken::from_parts(secret, TokenVersion::V1);
        secret.zeroize();
        token
    }

    fn from_parts(secret: [u8; 32], version: TokenVersion) -> NetworkToken {
        NetworkToken {
            secret,
            version,
            bootstrap: heapless::Vec::new(),
            overlay: None,
        }
    }

    /// Reads a token from its text: a current `kairos_...` token or a legacy
    /// EdgeVPN/Kairos one. Whitespace around and inside the text is ignored.
    pub fn decode(text: &str) -> Result<NetworkToken, TokenError> {
        text::decode(text)
    }

    /// Writes the text form to `out` and returns it. A buffer of
    /// [`MAX_ENCODED_LEN`] bytes always suffices; [`encoded_len`](Self::encoded_len)
    /// gives the exact size. A legacy token is written as the equivalent
    /// version-1 token (same derived secret, same network for this project).
    pub fn encode<'a>(&self, out: &'a mut [u8]) -> Result<&'a str, EncodeError> {
        let n = text::encode(self, out).map_err(|needed| EncodeError { needed })?;
        Ok(core::str::from_utf8(&out[..n]).expect("prefix and base64 are ASCII"))
    }

    /// The length of the text form.
    pub fn encoded_len(&self) -> usize {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let n = text::encode(self, &mut buf).unwrap_or_else(|needed| needed);
        buf.zeroize();
        n
    }

    /// The keys derived from the secret: PSK, MAC1 key, beacon key, network id.
    pub fn keys(&self) -> NetworkKeys {
        NetworkKeys::derive(&self.secret)
    }

    /// The public identifier of the network (shorthand for `keys().network_id`).
    pub fn network_id(&self) -> NetworkId {
        self.keys().network_id
    }

    /// The format the token was read from ([`TokenVersion::V1`] when generated).
    pub fn version(&self) -> TokenVersion {
        self.version
    }

    /// Whether the token came from an EdgeVPN or older Kairos token.
    pub fn is_legacy(&self) -> bool {
        self.version == TokenVersion::Legacy
    }

    /// The bootstrap endpoints, in the order they were added.
    pub fn bootstrap(&self) -> &[SocketAddr] {
        &self.bootstrap
    }

    /// The suggested overlay IPv4 range, if any.
    pub fn overlay(&self) -> Option<OverlayRange> {
        self.overlay
    }

    /// Adds a bootstrap endpoint. An endpoint already present is not added
    /// twice; an IPv6 endpoint loses its flow info and scope id (they mean
    /// nothing on another machine).
    pub fn add_bootstrap(&mut self, endpoint: SocketAddr) -> Result<(), BootstrapError> {
        let endpoint = match endpoint {
            SocketAddr::V6(a) => SocketAddr::new((*a.ip()).into(), a.port()),
            v4 => v4,
        };
        if endpoint.port() == 0 || endpoint.ip().is_unspecified() {
            return Err(BootstrapError::Unroutable);
        }
        if self.bootstrap.contains(&endpoint) {
            return Ok(());
        }
        self.bootstrap.push(endpoint).map_err(|_| BootstrapError::TooMany)
    }

    /// Builder form of [`add_bootstrap`](Self::add_bootstrap).
    pub fn with_bootstrap(mut self, endpoint: SocketAddr) -> Result<NetworkToken, BootstrapError> {
        self.add_bootstrap(endpoint)?;
        Ok(self)
    }

    /// Removes every bootstrap endpoint.
    pub fn clear_bootstrap(&mut self) {
        self.bootstrap.clear();
    }

    /// Sets or clears the overlay range.
    pub fn set_overlay(&mut self, range: Option<OverlayRange>) {
        self.overlay = range;
    }

    /// Builder form of [`set_overlay`](Self::set_overlay).
    pub fn with_overlay(mut self, range: OverlayRange) -> NetworkToken {
        self.overlay = Some(range);
        self
    }
}

impl Drop for NetworkToken {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ZeroizeOnDrop for NetworkToken {}

impl PartialEq for NetworkToken {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.secret.ct_eq(&other.secret))
            & (self.version == other.version)
            & (self.bootstrap == other.bootstrap)
            & (self.overlay == other.overlay)
    }
}

impl Eq for NetworkToken {}

/// Shows the version, hints and network id; never the secret.
impl fmt::Debug for NetworkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkToken")
            .field("version", &self.version)
            .field("network_id", &self.network_id())
            .field("secret", &"<redacted>")
            .field("bootstrap", &self.bootstrap())
            .field("overlay", &self.overlay)
            .finish()
    }
}

/// The text form, as [`encode`](NetworkToken::encode) writes it. It contains
/// the secret: print it only where the operator asked for the token.
impl fmt::Display for NetworkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let result = match self.encode(&mut buf) {
            Ok(s) => f.write_str(s),
            Err(_) => Err(fmt::Error),
        };
        buf.zeroize();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use core::net::Ipv4Addr;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::string::{String, ToString};
    use std::{format, vec::Vec};

    fn seeded(seed: u8) -> NetworkToken {
        NetworkToken::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
    }

    fn with_hints() -> NetworkToken {
        seeded(1)
            .with_bootstrap("203.0.113.7:4242".parse().unwrap())
            .unwrap()
            .with_bootstrap("[2001:db8::7]:51820".parse().unwrap())
            .unwrap()
            .with_overlay("10.1.0.0/24".parse().unwrap())
    }

    /// The text of `token` after `edit` changed its binary body (the
    /// checksum is recomputed, so only the edited check can fail).
    fn tampered(token: &NetworkToken, edit: impl FnOnce(&mut [u8])) -> String {
        let mut bin = [0u8; binary::MAX_LEN];
        let n = binary::emit(token, &mut bin);
        edit(&mut bin[..n - 4]);
        let sum = binary::checksum(&bin[..n - 4]);
        bin[n - 4..n].copy_from_slice(&sum);
        let mut out = [0u8; MAX_ENCODED_LEN];
        let m = URL_SAFE_NO_PAD.encode_slice(&bin[..n], &mut out).unwrap();
        format!("{PREFIX}{}", core::str::from_utf8(&out[..m]).unwrap())
    }

    fn legacy_yaml(room: &str) -> String {
        format!(
            "otp:\n  dht:\n    interval: 9000\n    key: NTs3QhDq8v2SWQvbYxYzGUMKsmGUCxhGqI9BwIRvPDY\n    length: 43\n  \
             crypto:\n    interval: 9000\n    key: kGmvVkN1Q5B0PpdiP8mJ8WQAsKhrQUzz3RwQRhGxRr0\n    length: 43\n\
             room: {room}\nrendezvous: Rn3YTMe4AvZa7vg2qLR2gZRLpW8ZS5w4j7TiMhPdWbn\n\
             mdns: bD6sE2PpHw8eLoaJQCI0NPBiUjaFnvMKZOgwhXXbKwN\nmax_message_size: 20971520\n"
        )
    }

    /// A legacy token as EdgeVPN prints it: padded standard base64 of the YAML.
    fn legacy_token(yaml: &str) -> String {
        let mut out = [0u8; 1024];
        let n = STANDARD.encode_slice(yaml.as_bytes(), &mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn round_trip_without_fields() {
        let t = seeded(9);
        let text = t.to_string();
        assert!(text.starts_with("kairos_"));
        assert_eq!(text.len(), t.encoded_len());
        assert_eq!(text.len(), PREFIX.len() + 50, "37 bytes of base64url");
        let back = NetworkToken::decode(&text).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.version(), TokenVersion::V1);
        assert!(back.bootstrap().is_empty() && back.overlay().is_none());
        assert_eq!(back.keys().psk, t.keys().psk);
    }

    #[test]
    fn round_trip_with_fields() {
        let t = with_hints();
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let text = t.encode(&mut buf).unwrap();
        assert_eq!(text, t.to_string());
        let back = NetworkToken::decode(text).unwrap();
        assert_eq!(back, t);
        let eps: Vec<String> = back.bootstrap().iter().map(|e| e.to_string()).collect();
        assert_eq!(eps, ["203.0.113.7:4242", "[2001:db8::7]:51820"]);
        assert_eq!(back.overlay().unwrap().to_string(), "10.1.0.0/24");
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        assert_eq!(seeded(42), seeded(42));
        assert_ne!(seeded(42), seeded(43));
        // Pins the RNG use and the whole text layout.
        assert_eq!(
            seeded(42).to_string(),
            "kairos_AZgZH0blgwIWRFQ2l4gDaXpeOrYbHolR1P6a5nurYUpftqG7JQ"
        );
    }

    #[test]
    fn whitespace_is_ignored() {
        let t = with_hints();
        let text = t.to_string();
        assert_eq!(NetworkToken::decode(&format!("\n\t  {text} \r\n")), Ok(t.clone()));
        let (a, b) = text.split_at(40);
        assert_eq!(NetworkToken::decode(&format!("{a}\n    {b}")), Ok(t));
    }

    #[test]
    fn decode_errors_name_the_check() {
        let text = seeded(3).to_string();
        assert_eq!(NetworkToken::decode("kairos_abc$def"), Err(TokenError::NotBase64));
        assert_eq!(
            NetworkToken::decode(&text.replace('_', "+")),
            Err(TokenError::NotBase64)
        );
        assert_eq!(NetworkToken::decode(""), Err(TokenError::TooShort));
        assert_eq!(NetworkToken::decode(&text[..text.len() - 8]), Err(TokenError::TooShort));
        assert_eq!(
            NetworkToken::decode(&tampered(&seeded(3), |b| b[0] = 2)),
            Err(TokenError::UnknownVersion(2))
        );

        // Any single changed character is caught by the checksum.
        for i in PREFIX.len()..text.len() - 1 {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let damaged = String::from_utf8(bytes).unwrap();
            assert_eq!(NetworkToken::decode(&damaged), Err(TokenError::BadChecksum), "char {i}");
        }
        let mut two = text.clone();
        two.push_str(&text[PREFIX.len()..]);
        assert_eq!(NetworkToken::decode(&two), Err(TokenError::BadChecksum));
    }

    #[test]
    fn bad_field_is_reported() {
        // An overlay prefix of 33, written past the setter's check.
        let t = seeded(5).with_overlay(OverlayRange::new(Ipv4Addr::new(10, 0, 0, 0), 32).unwrap());
        let bad = tampered(&t, |b| *b.last_mut().unwrap() = 33);
        let err = NetworkToken::decode(&bad).unwrap_err();
        assert_eq!(
            err,
            TokenError::BadField {
                tag: 0x03,
                problem: FieldProblem::BadValue
            }
        );
        assert!(err.to_string().contains("overlay"));
    }

    #[test]
    fn legacy_token_is_accepted_and_deterministic() {
        let text = legacy_token(&legacy_yaml("7jOmYpK0Ptc5m6FVq9dnBbnA3VgZp4Xe6BgYbJ1hSXt"));
        let a = NetworkToken::decode(&text).unwrap();
        let b = NetworkToken::decode(&format!("  {}\n", text.trim_end_matches('='))).unwrap();
        assert!(a.is_legacy());
        assert_eq!(a.version(), TokenVersion::Legacy);
        assert_eq!(a.version().to_string(), "legacy EdgeVPN/Kairos");
        assert_eq!(a, b);
        assert_eq!(a.network_id(), b.network_id());
        assert!(a.bootstrap().is_empty() && a.overlay().is_none());

        let other =
            NetworkToken::decode(&legacy_token(&legacy_yaml("SomeOtherRoom0000000000000000000000000000"))).unwrap();
        assert_ne!(a.secret, other.secret);
        assert_ne!(a.network_id(), other.network_id());
    }

    /// The legacy derivation, pinned (computed independently in Python from
    /// the documented hash): existing EdgeVPN/Kairos networks depend on it.
    #[test]
    fn legacy_known_answer() {
        let t = NetworkToken::decode(&legacy_token(&legacy_yaml(
            "7jOmYpK0Ptc5m6FVq9dnBbnA3VgZp4Xe6BgYbJ1hSXt",
        )))
        .unwrap();
        assert_eq!(t.network_id().to_string(), "259210dc97c9824d3c207bcfebfd294f");
    }

    #[test]
    fn legacy_token_encodes_as_the_same_network() {
        let legacy = NetworkToken::decode(&legacy_token(&legacy_yaml("r00m"))).unwrap();
        let upgraded = NetworkToken::decode(&legacy.to_string()).unwrap();
        assert_eq!(upgraded.version(), TokenVersion::V1);
        assert_eq!(upgraded.secret, legacy.secret);
        assert_eq!(upgraded.network_id(), legacy.network_id());
    }

    #[test]
    fn malformed_legacy_token_names_what_is_missing() {
        let no_crypto = legacy_yaml("r").replace("crypto:", "kripto:");
        assert_eq!(
            NetworkToken::decode(&legacy_token(&no_crypto)),
            Err(TokenError::LegacyMissingKey("otp.crypto.key"))
        );
        let no_room = legacy_yaml("r").replace("room:", "rooms:");
        assert_eq!(
            NetworkToken::decode(&legacy_token(&no_room)),
            Err(TokenError::LegacyMissingKey("room"))
        );
        let broken = legacy_yaml("r").replace("mdns:", "mdns");
        assert_eq!(
            NetworkToken::decode(&legacy_token(&broken)),
            Err(TokenError::LegacySyntax { line: 12 })
        );
    }

    #[test]
    fn bootstrap_setters() {
        let mut t = seeded(7);
        let v6 = core::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 3, 2);
        t.add_bootstrap(v6.into()).unwrap();
        assert_eq!(
            t.bootstrap()[0].to_string(),
            "[fe80::1]:7",
            "flow info and scope dropped"
        );
        t.add_bootstrap("[fe80::1]:7".parse().unwrap()).unwrap();
        assert_eq!(t.bootstrap().len(), 1, "duplicates are not added");
        assert_eq!(
            t.add_bootstrap("0.0.0.0:1".parse().unwrap()),
            Err(BootstrapError::Unroutable)
        );
        assert_eq!(
            t.add_bootstrap("1.2.3.4:0".parse().unwrap()),
            Err(BootstrapError::Unroutable)
        );
        for i in 1..MAX_BOOTSTRAP {
            t.add_bootstrap(SocketAddr::new(Ipv4Addr::new(192, 0, 2, i as u8).into(), 1))
                .unwrap();
        }
        assert_eq!(
            t.add_bootstrap("192.0.2.99:1".parse().unwrap()),
            Err(BootstrapError::TooMany)
        );
        assert_eq!(NetworkToken::decode(&t.to_string()), Ok(t.clone()));
        t.clear_bootstrap();
        t.set_overlay(None);
        assert_eq!(t, seeded(7));
    }

    #[test]
    fn encode_into_a_small_buffer_fails_cleanly() {
        let t = with_hints();
        let mut small = [0u8; 20];
        assert_eq!(
            t.encode(&mut small),
            Err(EncodeError {
                needed: t.encoded_len()
            })
        );
    }

    #[test]
    fn secret_never_shows() {
        let t = with_hints();
        let dbg = format!("{t:?}");
        assert!(
            dbg.contains("<redacted>") && dbg.contains(&t.network_id().to_string()),
            "{dbg}"
        );
        assert!(!dbg.contains(&hex::encode(&t.secret[..4])));
        assert!(!dbg.contains(&format!("{:?}", &t.secret[..4])));
        assert!(!dbg.contains(&t.to_string()[PREFIX.len()..PREFIX.len() + 8]));
    }
}
