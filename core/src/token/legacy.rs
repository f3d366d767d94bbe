//! Legacy EdgeVPN/Kairos tokens: base64 of a YAML document such as
//!
//! ```yaml
//! otp:
//!   dht: {interval: 9000, key: <43 alphanumerics>, length: 43}   # block style in practice
//!   crypto: {interval: 9000, key: <43 alphanumerics>, length: 43}
//! room: <43 alphanumerics>
//! rendezvous: <43 alphanumerics>
//! mdns: <43 alphanumerics>
//! max_message_size: 20971520
//! ```
//!
//! This module reads the YAML subset those tokens use (indentation-nested
//! block maps of scalars, comments, single- and double-quoted values, `---`)
//! without allocating, and hashes the secret material into a network secret:
//!
//! ```text
//! secret = BLAKE2s-256(LEGACY_LABEL || for each of otp.dht.key, otp.crypto.key,
//!                      room, rendezvous, mdns: u32le(len) || value bytes)
//! ```
//!
//! An absent key hashes as an empty value; `otp.crypto.key` and `room` are
//! required. Quoted values hash as the text between the quotes, escapes
//! untouched. Every node given the same token thus derives the same secret.
//! Intervals and lengths are not secret and do not enter the hash.
//!
//! It never keeps the YAML: the values are borrowed from the caller's buffer
//! only while hashing. Flow collections (`{...}`, `[...]`) on the path of a
//! needed key are refused rather than half-parsed; elsewhere they, sequences
//! and block scalars are skipped.

use crate::crypto::Hasher;

use super::{NetworkToken, TokenError, TokenVersion};

/// Domain separation for the legacy secret hash.
const LEGACY_LABEL: &[u8] = b"kairos-mesh legacy edgevpn token v1";

/// The keys whose values form the secret, in hash order, with their paths.
const SECRET_KEYS: [(&str, &[&str]); 5] = [
    ("otp.dht.key", &["otp", "dht", "key"]),
    ("otp.crypto.key", &["otp", "crypto", "key"]),
    ("room", &["room"]),
    ("rendezvous", &["rendezvous"]),
    ("mdns", &["mdns"]),
];
/// Indices into [`SECRET_KEYS`] that must be present and non-empty.
const REQUIRED: [usize; 2] = [1, 2];
/// Map nesting deeper than any needed key is skipped.
const MAX_DEPTH: usize = 3;

/// Parses a decoded legacy token into a token with the derived secret.
pub(super) fn parse(bytes: &[u8]) -> Result<NetworkToken, TokenError> {
    let text = core::str::from_utf8(bytes).map_err(|_| TokenError::LegacyNotText)?;
    let values = scan(text)?;
    for i in REQUIRED {
        if values[i].is_none_or(str::is_empty) {
            return Err(TokenError::LegacyMissingKey(SECRET_KEYS[i].0));
        }
    }
    let mut h = Hasher::new();
    h.update(LEGACY_LABEL);
    for v in values {
        let v = v.unwrap_or("").as_bytes();
        h.update(&(v.len() as u32).to_le_bytes());
        h.update(v);
    }
    Ok(NetworkToken::from_parts(h.finish(), TokenVersion::Legacy))
}

/// Walks the YAML lines and collects the values of [`SECRET_KEYS`].
fn scan(text: &str) -> Result<[Option<&str>; 5], TokenError> {
    let mut values: [Option<&str>; 5] = [None; 5];
    // The open maps above the current line: (indent, key).
    let mut stack: [(usize, &str); MAX_DEPTH] = [(0, ""); MAX_DEPTH];
    let mut depth = 0;
    // Lines indented deeper than this belong to something skipped.
    let mut skip_deeper_than: Option<usize> = None;

    for (index, raw) in text.split('\n').enumerate() {
        let line_no = u16::try_from(index + 1).unwrap_or(u16::MAX);
        let syntax = TokenError::LegacySyntax { line: line_no };
        let line = strip_comment(raw.strip_suffix('\r').unwrap_or(raw)).ok_or(syntax)?;
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.trim().is_empty() {
            continue;
        }
        if let Some(limit) = skip_deeper_than {
            if indent > limit {
                continue;
            }
            skip_deeper_than = None;
        }
        if content.starts_with('\t') {
            return Err(syntax); // YAML forbids tabs in indentation
        }
        if indent == 0 && (content.starts_with("---") || content.starts_with("...") || content.starts_with('%')) {
            continue;
        }
        while depth > 0 && stack[depth - 1].0 >= indent {
            depth -= 1;
        }
        if content == "-" || content.starts_with("- ") {
            skip_deeper_than = Some(indent); // a sequence item: no needed key lives in one
            continue;
        }
        let (key, value) = split_key(content).ok_or(syntax)?;
        if value.is_empty() {
            if depth == MAX_DEPTH {
                skip_deeper_than = Some(indent);
            } else {
                stack[depth] = (indent, key);
                depth += 1;
            }
            continue;
        }
        if value.starts_with('|') || value.starts_with('>') {
            skip_deeper_than = Some(indent); // a block scalar's lines follow
            continue;
        }
        if value.starts_with('{') || value.starts_with('[') {
            if SECRET_KEYS.iter().any(|(_, path)| leads_to(path, &stack[..depth], key)) {
                return Err(syntax); // flow style where a needed key lives: refuse, don't guess
            }
            continue;
        }
        let value = unquote(value).ok_or(syntax)?;
        let wanted = SECRET_KEYS
            .iter()
            .position(|(_, path)| path.len() == depth + 1 && leads_to(path, &stack[..depth], key));
        if let Some(i) = wanted {
            if values[i].is_some() {
                return Err(TokenError::LegacyDuplicateKey(SECRET_KEYS[i].0));
            }
            values[i] = Some(value);
        }
    }
    Ok(values)
}

/// Whether `key`, under the open maps `open`, is `path` or one of its ancestors.
fn leads_to(path: &[&str], open: &[(usize, &str)], key: &str) -> bool {
    path.len() > open.len() && path.iter().zip(open).all(|(p, (_, k))| p == k) && path[open.len()] == key
}

/// Removes a `#` comment (at line start or after a space, outside quotes) and
/// trailing spaces. `None` if a quote is left open.
fn strip_comment(line: &str) -> Option<&str> {
    let mut quote: Option<u8> = None;
    let mut prev = b' ';
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match quote {
            Some(b'"') if escaped => escaped = false,
            Some(b'"') if b == b'\\' => escaped = true,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'#' && (prev == b' ' || prev == b'\t') => return Some(line[..i].trim_end()),
            None if (b == b'"' || b == b'\'') && (prev == b' ' || prev == b':') => quote = Some(b),
            None => {}
        }
        prev = b;
    }
    if quote.is_some() {
        return None;
    }
    Some(line.trim_end())
}

/// Splits `key: value` (or `key:`); the key may be quoted.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let colon = if content.starts_with(['"', '\'']) {
        let q = content.as_bytes()[0] as char;
        let close = content[1..].find(q)? + 1;
        close + 1 + content[close + 1..].find(':')?
    } else {
        content
            .match_indices(':')
            .find(|(i, _)| matches!(content.as_bytes().get(i + 1), None | Some(b' ')))?
            .0
    };
    let key = unquote(content[..colon].trim())?;
    let value = content[colon + 1..].trim();
    if key.is_empty() {
        return None;
    }
    Some((key, value))
}

/// The text of a plain, single- or double-quoted scalar (escapes untouched).
fn unquote(s: &str) -> Option<&str> {
    match s.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let inner = s.get(1..s.len().checked_sub(1)?)?;
            (s.len() >= 2 && s.as_bytes()[s.len() - 1] == q).then_some(inner)
        }
        _ => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "otp:
  dht:
    interval: 9000
    key: NTs3QhDq8v2SWQvbYxYzGUMKsmGUCxhGqI9BwIRvPDY
    length: 43
  crypto:
    interval: 9000
    key: kGmvVkN1Q5B0PpdiP8mJ8WQAsKhrQUzz3RwQRhGxRr0
    length: 43
room: 7jOmYpK0Ptc5m6FVq9dnBbnA3VgZp4Xe6BgYbJ1hSXt
rendezvous: Rn3YTMe4AvZa7vg2qLR2gZRLpW8ZS5w4j7TiMhPdWbn
mdns: bD6sE2PpHw8eLoaJQCI0NPBiUjaFnvMKZOgwhXXbKwN
max_message_size: 20971520
";

    fn values(yaml: &str) -> [Option<&str>; 5] {
        scan(yaml).unwrap()
    }

    #[test]
    fn reads_the_edgevpn_layout() {
        let v = values(YAML);
        assert_eq!(v[0], Some("NTs3QhDq8v2SWQvbYxYzGUMKsmGUCxhGqI9BwIRvPDY"));
        assert_eq!(v[1], Some("kGmvVkN1Q5B0PpdiP8mJ8WQAsKhrQUzz3RwQRhGxRr0"));
        assert_eq!(v[2], Some("7jOmYpK0Ptc5m6FVq9dnBbnA3VgZp4Xe6BgYbJ1hSXt"));
        assert_eq!(v[3], Some("Rn3YTMe4AvZa7vg2qLR2gZRLpW8ZS5w4j7TiMhPdWbn"));
        assert_eq!(v[4], Some("bD6sE2PpHw8eLoaJQCI0NPBiUjaFnvMKZOgwhXXbKwN"));
    }

    #[test]
    fn quotes_comments_crlf_and_other_indentation() {
        let yaml = "---\r\n# made by hand\r\notp:\r\n    crypto:   # four spaces\r\n        key: \"abc # not a comment\"\r\n    dht:\r\n        key: 'd''e'\r\nroom: 'r1'  # trailing\r\n\"mdns\": m\r\n";
        let v = values(yaml);
        assert_eq!(v[1], Some("abc # not a comment"));
        assert_eq!(v[0], Some("d''e"));
        assert_eq!(v[2], Some("r1"));
        assert_eq!(v[4], Some("m"));
        assert_eq!(v[3], None);
    }

    #[test]
    fn skips_what_it_does_not_need() {
        let yaml = "extra:\n  list:\n    - a\n    - key: x\n  deep:\n    deeper:\n      deepest:\n        key: 1\nnote: |\n  room: not-this\nflow: {room: nope}\nroom: yes\notp:\n  crypto:\n    key: k\n";
        let v = values(yaml);
        assert_eq!(v[2], Some("yes"));
        assert_eq!(v[1], Some("k"));
    }

    #[test]
    fn keys_match_by_path_not_name() {
        let v = values("otp:\n  crypto:\n    interval: 1\nkey: top\ncrypto:\n  key: wrong\nroom: r\n");
        assert_eq!(v[1], None);
        let v = values("otp:\n  crypto:\n    interval: 1\n  key: wrong\n  dht:\n    key: d\n");
        assert_eq!((v[0], v[1]), (Some("d"), None));
    }

    #[test]
    fn malformed_yaml_is_refused_with_its_line() {
        let syntax = |line| Err(TokenError::LegacySyntax { line });
        assert_eq!(scan("room: r\nno colon here\n"), syntax(2));
        assert_eq!(scan("room: \"open\n"), syntax(1));
        assert_eq!(scan("otp:\n\tcrypto:\n"), syntax(2));
        assert_eq!(scan("otp: {crypto: {key: k}}\n"), syntax(1));
        assert_eq!(scan("otp:\n  crypto: {key: k}\n"), syntax(2));
        assert_eq!(scan("room: r\nroom: s\n"), Err(TokenError::LegacyDuplicateKey("room")));
    }

    #[test]
    fn required_keys_are_named() {
        let no_crypto = "otp:\n  dht:\n    key: d\nroom: r\n";
        assert_eq!(
            parse(no_crypto.as_bytes()).err(),
            Some(TokenError::LegacyMissingKey("otp.crypto.key"))
        );
        let no_room = "otp:\n  crypto:\n    key: c\nrendezvous: x\n";
        assert_eq!(
            parse(no_room.as_bytes()).err(),
            Some(TokenError::LegacyMissingKey("room"))
        );
        let empty_room = "otp:\n  crypto:\n    key: c\nroom: ''\n";
        assert_eq!(
            parse(empty_room.as_bytes()).err(),
            Some(TokenError::LegacyMissingKey("room"))
        );
        assert_eq!(parse(&[0xff, 0xfe, b'a']).err(), Some(TokenError::LegacyNotText));
    }

    #[test]
    fn secret_is_a_labelled_hash_of_the_material() {
        let t = parse(YAML.as_bytes()).unwrap();
        assert!(t.is_legacy());
        let mut h = Hasher::new();
        h.update(LEGACY_LABEL);
        for v in values(YAML) {
            let v = v.unwrap();
            h.update(&(v.len() as u32).to_le_bytes());
            h.update(v.as_bytes());
        }
        assert_eq!(t.secret, h.finish());
        // Formatting that YAML does not see does not change the secret.
        let reformatted = YAML
            .replace("  ", "    ")
            .replace("room: 7j", "room: \"7j")
            .replace("hSXt", "hSXt\"");
        assert_eq!(parse(reformatted.as_bytes()).unwrap().secret, t.secret);
        // Non-secret fields do not enter it.
        let other_interval = YAML.replace("9000", "60");
        assert_eq!(parse(other_interval.as_bytes()).unwrap().secret, t.secret);
    }
}
