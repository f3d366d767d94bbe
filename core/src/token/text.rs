//! The text envelope of a token: the `kairos_` prefix, base64, whitespace,
//! and the choice between the binary layout and a legacy EdgeVPN token.
//!
//! Writing: `kairos_` followed by the binary layout in base64url without
//! padding. Reading, after removing every ASCII whitespace character (tokens
//! wrapped by `base64` or by a YAML editor still read):
//! - with the `kairos_` prefix, the rest is base64url and is read as the
//!   binary layout;
//! - without it, the text may be standard base64 (a legacy token, padded or
//!   not) or base64url (a current token whose prefix was lost). The first
//!   decoded byte tells them apart: the binary layout starts with a version
//!   byte below 0x20, YAML starts with a printable character.
//!
//! Decoding streams the text through a 64-character window into a
//! [`DECODE_BUF_LEN`] stack buffer: nothing allocates, and the stack cost is
//! about 4.2 KiB, once per token read.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroize;

use super::{binary, legacy, NetworkToken, TokenError};

/// What every token this build writes starts with. `_` is outside the
/// standard base64 alphabet, so no legacy token starts with it.
pub const PREFIX: &str = "kairos_";

/// The largest decoded token read: bounds a legacy token's YAML.
pub const DECODE_BUF_LEN: usize = 4096;

const fn unpadded_base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// The longest text [`NetworkToken::encode`] produces.
pub const MAX_ENCODED_LEN: usize = PREFIX.len() + unpadded_base64_len(binary::MAX_LEN);

/// Reading accepts padding or none (EdgeVPN tokens are padded) and stray
/// trailing bits (a truncated token then reports its length or checksum,
/// which says more than "not base64"; the checksum guards integrity).
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Characters decoded per step: a multiple of 4, so no quantum straddles two steps.
const WINDOW: usize = 64;

/// Reads a token text (see the module docs for the rules).
pub(super) fn decode(text: &str) -> Result<NetworkToken, TokenError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (payload, prefixed) = match text.strip_prefix(PREFIX) {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let engine = if prefixed {
        &URL_SAFE_LENIENT
    } else {
        let url = payload.bytes().any(|b| b == b'-' || b == b'_');
        let std = payload.bytes().any(|b| b == b'+' || b == b'/');
        match (url, std) {
            (true, true) => return Err(TokenError::NotBase64),
            (true, false) => &URL_SAFE_LENIENT,
            (false, _) => &STANDARD_LENIENT,
        }
    };
    let mut buf = [0u8; DECODE_BUF_LEN];
    let mut window = [0u8; WINDOW];
    let result = decode_base64(engine, payload, &mut window, &mut buf).and_then(|n| {
        let bytes = &buf[..n];
        if n < binary::MIN_LEN {
            Err(TokenError::TooShort)
        } else if prefixed || !starts_like_text(bytes[0]) {
            binary::parse(bytes)
        } else {
            legacy::parse(bytes)
        }
    });
    buf.zeroize();
    window.zeroize();
    result
}

/// Whether a first byte looks like the start of YAML rather than a version byte.
fn starts_like_text(b: u8) -> bool {
    b >= 0x20 || b == b'\t' || b == b'\n' || b == b'\r'
}

/// Decodes base64 `text`, skipping ASCII whitespace, into `out`, through
/// `window` (the caller zeroizes both).
fn decode_base64(
    engine: &GeneralPurpose,
    text: &str,
    window: &mut [u8; WINDOW],
    out: &mut [u8],
) -> Result<usize, TokenError> {
    let mut filled = 0;
    let mut len = 0;
    let mut padding = false;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if padding && b != b'=' {
            return Err(TokenError::NotBase64);
        }
        padding |= b == b'=';
        if filled == WINDOW {
            len += decode_window(engine, window, &mut out[len..])?;
            filled = 0;
        }
        window[filled] = b;
        filled += 1;
    }
    // A lone character after the last full quantum holds no whole byte: the
    // text was cut short. Drop it and let the length or checksum check say so.
    let data = window[..filled].iter().filter(|&&b| b != b'=').count();
    if data % 4 == 1 && filled == data {
        filled -= 1;
    }
    len += decode_window(engine, &window[..filled], &mut out[len..])?;
    Ok(len)
}

fn decode_window(engine: &GeneralPurpose, chars: &[u8], out: &mut [u8]) -> Result<usize, TokenError> {
    let mut bytes = [0u8; WINDOW / 4 * 3];
    let n = engine
        .decode_slice(chars, &mut bytes)
        .map_err(|_| TokenError::NotBase64)?;
    let result = match out.get_mut(..n) {
        Some(dst) => {
            dst.copy_from_slice(&bytes[..n]);
            Ok(n)
        }
        None => Err(TokenError::TooLong),
    };
    bytes.zeroize();
    result
}

/// Writes the text form of `token` to `out`; returns its length.
pub(super) fn encode(token: &NetworkToken, out: &mut [u8]) -> Result<usize, usize> {
    let mut bin = [0u8; binary::MAX_LEN];
    let n = binary::emit(token, &mut bin);
    let needed = PREFIX.len() + unpadded_base64_len(n);
    let result = match out.get_mut(..needed) {
        Some(dst) => {
            dst[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
            let written = URL_SAFE_NO_PAD
                .encode_slice(&bin[..n], &mut dst[PREFIX.len()..])
                .expect("buffer sized by unpadded_base64_len");
            debug_assert_eq!(PREFIX.len() + written, needed);
            Ok(needed)
        }
        None => Err(needed),
    };
    bin.zeroize();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenVersion;

    fn token() -> NetworkToken {
        NetworkToken::from_parts([7; 32], TokenVersion::V1)
    }

    fn encoded(t: &NetworkToken) -> std::string::String {
        let mut out = [0u8; MAX_ENCODED_LEN];
        let n = encode(t, &mut out).unwrap();
        std::string::String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn max_len_matches_the_largest_token() {
        assert_eq!(binary::MAX_LEN, 204);
        assert_eq!(MAX_ENCODED_LEN, 7 + 272);
    }

    #[test]
    fn prefix_is_optional_on_input() {
        let t = token();
        let s = encoded(&t);
        assert!(s.starts_with(PREFIX));
        assert_eq!(decode(&s[PREFIX.len()..]), Ok(t.clone()));
        // Also as standard base64 with padding, as a confused tool may re-encode it.
        let mut bin = [0u8; binary::MAX_LEN];
        let n = binary::emit(&t, &mut bin);
        let mut std_text = [0u8; 80];
        let m = base64::engine::general_purpose::STANDARD
            .encode_slice(&bin[..n], &mut std_text)
            .unwrap();
        assert_eq!(decode(core::str::from_utf8(&std_text[..m]).unwrap()), Ok(t));
    }

    #[test]
    fn wrapped_text_reads() {
        let t = token();
        let s = encoded(&t);
        let (a, b) = s.split_at(30);
        let (b, c) = b.split_at(17);
        let wrapped = std::format!("  {a}\n  {b}\r\n\t{c}\n");
        assert_eq!(decode(&wrapped), Ok(t));
    }

    #[test]
    fn padding_only_at_the_end() {
        assert_eq!(decode("QQ==QUFB"), Err(TokenError::NotBase64));
        assert_eq!(decode("kairos_AAAA=AAAA"), Err(TokenError::NotBase64));
    }

    #[test]
    fn truncated_text_reports_length_or_checksum() {
        let s = encoded(&token());
        for cut in 1..s.len() - PREFIX.len() {
            let err = decode(&s[..s.len() - cut]).unwrap_err();
            assert!(
                matches!(err, TokenError::TooShort | TokenError::BadChecksum),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn mixed_alphabets_are_refused() {
        assert_eq!(decode("ab-c+def"), Err(TokenError::NotBase64));
    }

    #[test]
    fn oversized_input_is_too_long() {
        let long = "QUFB".repeat(DECODE_BUF_LEN / 3 + 10);
        assert_eq!(decode(&long), Err(TokenError::TooLong));
    }

    #[test]
    fn short_buffer_reports_needed_len() {
        let t = token();
        let mut small = [0u8; 10];
        assert_eq!(encode(&t, &mut small), Err(encoded(&t).len()));
    }
}
