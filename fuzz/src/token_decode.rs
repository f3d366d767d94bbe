//! `token_decode`: `NetworkToken::decode` on arbitrary text, and the round
//! trip of every token it accepts.
//!
//! The input is normally the token text itself (non-UTF-8 bytes are replaced,
//! `from_utf8_lossy`), so real tokens are seeds as they are. Two first bytes
//! that no text token starts with select a way past the outer checks that
//! random mutation rarely gets through:
//! - `0x00`: the rest is a binary token body (version, secret, fields); the
//!   target appends the valid checksum and writes it as `kairos_` +
//!   base64url, so the field parser is reached;
//! - `0x01`: the rest is a legacy YAML document; the target writes it as
//!   padded standard base64, as EdgeVPN does, so the YAML reader is reached;
//! - `0x02`: as `0x00` without the prefix, in padded standard base64 (a token
//!   re-encoded by a confused tool).
//!
//! Checks for every token that decodes (from any mode):
//! - `encode` succeeds into `MAX_ENCODED_LEN` bytes, writes `encoded_len()`
//!   bytes, equals `Display`, and fails with the needed length into a buffer
//!   one byte short;
//! - the encoded text decodes again, as version 1, to the same network id,
//!   PSK, bootstrap endpoints and overlay range; for a non-legacy token to an
//!   equal token (`==`, secret included) of the same version;
//! - the text without its prefix, and wrapped in whitespace, decodes to the
//!   same token;
//! - `Debug` does not contain the encoded text (the secret).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kairos_core::crypto::hash;
use kairos_core::token::{NetworkToken, TokenVersion, MAX_ENCODED_LEN, PREFIX};

use crate::Stats;

/// Domain separation label of the token checksum (docs/token.md).
pub const CHECKSUM_LABEL: &[u8] = b"kairos-mesh token checksum";

/// The first byte that selects binary-body mode.
pub const MODE_BINARY: u8 = 0x00;
/// The first byte that selects legacy-YAML mode.
pub const MODE_YAML: u8 = 0x01;
/// The first byte that selects binary-body mode in standard base64 without prefix.
pub const MODE_BINARY_STD: u8 = 0x02;

/// The text of a binary token body: the checksum appended, base64url, prefix.
pub fn binary_text(body: &[u8], prefixed: bool) -> String {
    let mut bin = body.to_vec();
    let sum = hash(&[CHECKSUM_LABEL, body]);
    bin.extend_from_slice(&sum[..4]);
    if prefixed {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bin))
    } else {
        STANDARD.encode(&bin)
    }
}

/// Runs one input. See the module docs.
pub fn run(data: &[u8]) -> Stats {
    let text = match data.split_first() {
        Some((&MODE_BINARY, body)) => binary_text(body, true),
        Some((&MODE_BINARY_STD, body)) => binary_text(body, false),
        Some((&MODE_YAML, yaml)) => STANDARD.encode(yaml),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    let mut stats = Stats::default();
    check_text(&text, &mut stats);
    stats
}

/// Decodes `text`; if it is a token, checks the round trips.
pub fn check_text(text: &str, stats: &mut Stats) {
    stats.fed += 1;
    let Ok(token) = NetworkToken::decode(text) else { return };
    stats.accepted += 1;

    let mut buf = [0u8; MAX_ENCODED_LEN];
    let encoded = token
        .encode(&mut buf)
        .expect("MAX_ENCODED_LEN always suffices")
        .to_owned();
    assert_eq!(encoded.len(), token.encoded_len());
    assert_eq!(encoded, token.to_string());
    assert!(encoded.starts_with(PREFIX));
    let mut short = vec![0u8; encoded.len() - 1];
    assert_eq!(token.encode(&mut short).map_err(|e| e.needed), Err(encoded.len()));

    let again = NetworkToken::decode(&encoded).expect("an encoded token decodes");
    assert_eq!(again.version(), TokenVersion::V1, "encode writes version 1");
    assert_eq!(again.keys().network_id, token.keys().network_id);
    assert_eq!(again.keys().psk, token.keys().psk);
    assert_eq!(again.bootstrap(), token.bootstrap());
    assert_eq!(again.overlay(), token.overlay());
    if token.is_legacy() {
        assert_eq!(token.version(), TokenVersion::Legacy);
    } else {
        assert_eq!(again.version(), token.version());
        assert_eq!(again, token, "decode(encode(t)) != t");
    }

    // The prefix is optional on input; whitespace around and inside is ignored.
    let bare = &encoded[PREFIX.len()..];
    assert_eq!(
        NetworkToken::decode(bare).as_ref(),
        Ok(&again),
        "without prefix: {bare}"
    );
    let (a, b) = encoded.split_at(encoded.len() / 2);
    let wrapped = format!("\n\t {a}\r\n  {b} \n");
    assert_eq!(
        NetworkToken::decode(&wrapped).as_ref(),
        Ok(&again),
        "wrapped: {wrapped:?}"
    );

    let debug = format!("{token:?}");
    assert!(!debug.contains(bare), "Debug shows the secret: {debug}");
}
