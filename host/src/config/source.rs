//! Reading a config file (or stdin) into memory, bounded: at most
//! [`MAX_FILE_SIZE`] bytes are read, so a huge file or a device such as
//! `/dev/zero` is refused quickly and memory stays bounded. Then the bytes
//! must be UTF-8; the first bad byte is reported with its line and column.
//!
//! This module reads bytes and checks the encoding; it never parses YAML.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::diagnostic::{Diagnostic, Severity, Span};

/// The largest config file accepted (1 MiB). Cloud-configs with embedded
/// files are tens of KiB; a larger file is a mistake or an attack.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// A config file's bytes and the name to show in messages.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// The bytes read (at most [`MAX_FILE_SIZE`]).
    pub bytes: Vec<u8>,
    /// Whether there was more than [`MAX_FILE_SIZE`] to read.
    pub oversized: bool,
}

impl Source {
    /// Reads `path`, or stdin when it is `-`.
    pub fn read(path: &Path) -> io::Result<Source> {
        if path.as_os_str() == "-" {
            Source::from_reader("<stdin>", io::stdin().lock())
        } else {
            Source::from_reader(&path.display().to_string(), File::open(path)?)
        }
    }

    /// Reads at most [`MAX_FILE_SIZE`] bytes from `r`.
    pub fn from_reader(name: &str, r: impl Read) -> io::Result<Source> {
        let mut bytes = Vec::new();
        r.take(MAX_FILE_SIZE as u64 + 1).read_to_end(&mut bytes)?;
        let oversized = bytes.len() > MAX_FILE_SIZE;
        bytes.truncate(MAX_FILE_SIZE);
        Ok(Source {
            name: name.to_owned(),
            bytes,
            oversized,
        })
    }

    /// A source made of `text` (tests, generated configs).
    #[cfg(test)]
    pub fn from_text(name: &str, text: &str) -> Source {
        Source::from_reader(name, text.as_bytes()).expect("reading memory cannot fail")
    }

    /// The text, or why there is none: too large, or not UTF-8.
    pub fn text(&self) -> Result<&str, Diagnostic> {
        if self.oversized {
            return Err(Diagnostic::file(
                Severity::Error,
                None,
                "",
                format!(
                    "the file is larger than {} KiB: a cloud-config is far smaller (is this the right file?)",
                    MAX_FILE_SIZE / 1024
                ),
            ));
        }
        std::str::from_utf8(&self.bytes).map_err(|e| {
            let good = std::str::from_utf8(&self.bytes[..e.valid_up_to()]).expect("valid prefix");
            let at = Span::at_byte(good, good.len());
            Diagnostic::file(
                Severity::Error,
                Some(at),
                "",
                "the file is not UTF-8 text (a binary file, or another encoding?)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_at_most_the_limit() {
        let big = std::io::repeat(b'a');
        let s = Source::from_reader("zero", big).unwrap();
        assert!(s.oversized);
        assert_eq!(s.bytes.len(), MAX_FILE_SIZE);
        assert!(s.text().unwrap_err().message.contains("larger than 1024 KiB"));
        let exact = vec![b'a'; MAX_FILE_SIZE];
        assert!(!Source::from_reader("x", &exact[..]).unwrap().oversized);
    }

    #[test]
    fn locates_the_first_bad_byte() {
        let s = Source::from_reader("bin", &b"p2p:\n  role: ma\xffster\n"[..]).unwrap();
        let e = s.text().unwrap_err();
        assert_eq!(e.span(), Some(Span { line: 2, column: 11 }));
        assert!(e.message.contains("not UTF-8"));
        assert_eq!(Source::from_text("t", "a: 1").text().unwrap(), "a: 1");
    }
}
