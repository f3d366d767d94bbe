//! The errors of the token module: why a token text was refused, why a token
//! could not be encoded into a buffer, and why a builder setter refused a value.
//!
//! Every error is a small `Copy` value whose `Display` names the check that
//! failed, in words an operator can act on. None of them ever carries secret
//! material: a legacy-token error names a YAML key, never its value.

use core::fmt;

/// Why [`NetworkToken::decode`](super::NetworkToken::decode) refused a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The text holds a character outside the base64 alphabets, or padding in
    /// the wrong place.
    NotBase64,
    /// The token decodes to fewer bytes than the smallest valid token.
    TooShort,
    /// The token is longer than any valid token (or than the decode buffer).
    TooLong,
    /// The version byte is one this build does not know.
    UnknownVersion(u8),
    /// The trailing checksum does not match: the token was truncated,
    /// mistyped or damaged in transit.
    BadChecksum,
    /// An optional field is malformed.
    BadField {
        /// The field's type byte.
        tag: u8,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// A legacy (EdgeVPN/Kairos) token does not decode to UTF-8 text.
    LegacyNotText,
    /// A line of a legacy token's YAML could not be parsed (1-based).
    LegacySyntax {
        /// The line number in the decoded YAML, counting from 1.
        line: u16,
    },
    /// A legacy token lacks a key the network secret is derived from (a
    /// dotted path such as `otp.crypto.key`), or its value is empty.
    LegacyMissingKey(&'static str),
    /// A legacy token sets the same key twice (dotted path).
    LegacyDuplicateKey(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TokenError::NotBase64 => f.write_str("token is not valid base64 (stray characters or a mangled copy?)"),
            TokenError::TooShort => f.write_str("token is too short (was it copied completely?)"),
            TokenError::TooLong => f.write_str("token is too long (two tokens pasted together?)"),
            TokenError::UnknownVersion(v) => {
                write!(
                    f,
                    "token version {v} is not supported by this kairos (made by a newer release?)"
                )
            }
            TokenError::BadChecksum => f.write_str("token checksum does not match (was it copied completely?)"),
            TokenError::BadField { tag, problem } => {
                write!(f, "token field 0x{tag:02x} ({}) is invalid: {problem}", field_name(tag))
            }
            TokenError::LegacyNotText => f.write_str("legacy EdgeVPN/Kairos token does not decode to YAML text"),
            TokenError::LegacySyntax { line } => {
                write!(f, "legacy EdgeVPN/Kairos token: cannot parse line {line} of its YAML")
            }
            TokenError::LegacyMissingKey(key) => {
                write!(f, "legacy EdgeVPN/Kairos token lacks `{key}` (or it is empty)")
            }
            TokenError::LegacyDuplicateKey(key) => write!(f, "legacy EdgeVPN/Kairos token sets `{key}` twice"),
        }
    }
}

impl core::error::Error for TokenError {}

/// What is wrong with a token field (see [`TokenError::BadField`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldProblem {
    /// The field's header or value runs past the end of the token.
    Truncated,
    /// The value's length is not the one its type requires.
    WrongLength,
    /// A required field type (below 0x80) that this build does not know.
    UnknownRequired,
    /// A field that may appear once appears again, or a repeated endpoint.
    Duplicate,
    /// More bootstrap endpoints than a token may carry.
    TooMany,
    /// The value is out of range (port 0, unspecified address, prefix > 32).
    BadValue,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldProblem::Truncated => "truncated",
            FieldProblem::WrongLength => "wrong length",
            FieldProblem::UnknownRequired => "unknown required field (made by a newer release?)",
            FieldProblem::Duplicate => "repeated",
            FieldProblem::TooMany => "too many bootstrap endpoints",
            FieldProblem::BadValue => "value out of range",
        })
    }
}

/// The human name of a field type byte, for error messages.
pub(super) fn field_name(tag: u8) -> &'static str {
    match tag {
        super::binary::TAG_BOOTSTRAP_V4 => "bootstrap IPv4 endpoint",
        super::binary::TAG_BOOTSTRAP_V6 => "bootstrap IPv6 endpoint",
        super::binary::TAG_OVERLAY_V4 => "overlay IPv4 range",
        0x80..=0xff => "unknown optional field",
        _ => "unknown field",
    }
}

/// [`NetworkToken::encode`](super::NetworkToken::encode) was given a buffer
/// too small for the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    /// Bytes the text needs (at most [`MAX_ENCODED_LEN`](super::MAX_ENCODED_LEN)).
    pub needed: usize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token text needs a {}-byte buffer", self.needed)
    }
}

impl core::error::Error for EncodeError {}

/// A bootstrap endpoint was refused by
/// [`NetworkToken::add_bootstrap`](super::NetworkToken::add_bootstrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The token already carries [`MAX_BOOTSTRAP`](super::MAX_BOOTSTRAP) endpoints.
    TooMany,
    /// Port 0 or an unspecified address (`0.0.0.0`, `::`): nobody can dial it.
    Unroutable,
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapError::TooMany => {
                write!(
                    f,
                    "a token carries at most {} bootstrap endpoints",
                    super::MAX_BOOTSTRAP
                )
            }
            BootstrapError::Unroutable => f.write_str("bootstrap endpoint has port 0 or an unspecified address"),
        }
    }
}

impl core::error::Error for BootstrapError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn messages_name_the_failed_check() {
        assert_eq!(
            TokenError::BadChecksum.to_string(),
            "token checksum does not match (was it copied completely?)"
        );
        assert!(TokenError::UnknownVersion(7).to_string().contains("version 7"));
        let bad = TokenError::BadField {
            tag: 0x03,
            problem: FieldProblem::BadValue,
        };
        assert_eq!(
            bad.to_string(),
            "token field 0x03 (overlay IPv4 range) is invalid: value out of range"
        );
        let unknown = TokenError::BadField {
            tag: 0x42,
            problem: FieldProblem::UnknownRequired,
        };
        assert!(unknown.to_string().contains("0x42 (unknown field)"));
        assert!(TokenError::LegacyMissingKey("otp.crypto.key")
            .to_string()
            .contains("`otp.crypto.key`"));
        assert!(TokenError::LegacySyntax { line: 4 }.to_string().contains("line 4"));
        assert!(EncodeError { needed: 99 }.to_string().contains("99"));
        assert!(BootstrapError::TooMany.to_string().contains('8'));
    }

    #[test]
    fn every_message_is_one_line() {
        let all = [
            TokenError::NotBase64,
            TokenError::TooShort,
            TokenError::TooLong,
            TokenError::UnknownVersion(2),
            TokenError::BadChecksum,
            TokenError::BadField {
                tag: 0x81,
                problem: FieldProblem::Truncated,
            },
            TokenError::LegacyNotText,
            TokenError::LegacySyntax { line: 1 },
            TokenError::LegacyMissingKey("room"),
            TokenError::LegacyDuplicateKey("room"),
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
        }
    }
}
