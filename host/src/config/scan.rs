//! The first pass over a config's text: a YAML event walk (yaml-rust2's
//! marked events) that checks the syntax, refuses documents that would
//! expand too far (alias bombs) or nest too deep, finds duplicate keys, and
//! builds a [`PositionIndex`]: the line and column of every key and value by
//! its YAML path.
//!
//! This pass runs before serde_yaml_ng builds a `Value`, so that building it
//! is bounded: the expanded size of the document (aliases counted at the
//! size of what they refer to) is known and capped here, while nothing is
//! expanded. It never interprets values; that is the resolver's job.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use super::diagnostic::{Diagnostic, Severity, Span};

/// Most nodes (scalars, lists, mappings, keys included) the document may
/// expand to, aliases counted at their full size. A large cloud-config has a
/// few thousand.
pub const MAX_NODES: u64 = 100_000;
/// Most bytes of scalar text the document may expand to (the file itself is
/// at most 1 MiB; only aliases can take it past that).
pub const MAX_EXPANDED_BYTES: u64 = 4 * 1024 * 1024;
/// Deepest nesting of lists and mappings.
pub const MAX_DEPTH: usize = 64;

/// Positions of the keys and values of a document, by YAML path: `p2p`,
/// `p2p.mesh.listen_port`, `p2p.mesh.bootstrap_peers[1]`; the root is `""`.
/// Aliases are not expanded: a value reached through one is not indexed,
/// and lookups fall back to the nearest indexed ancestor.
#[derive(Debug, Default)]
pub struct PositionIndex {
    keys: HashMap<String, Span>,
    values: HashMap<String, Span>,
}

impl PositionIndex {
    /// Where the value at `path` starts: the value itself, else its key,
    /// else the nearest ancestor's.
    pub fn value(&self, path: &str) -> Option<Span> {
        self.locate(path, true)
    }

    /// Where the key of `path` is: the key itself, else the nearest
    /// ancestor's.
    pub fn key(&self, path: &str) -> Option<Span> {
        self.locate(path, false)
    }

    fn locate(&self, path: &str, value_first: bool) -> Option<Span> {
        let mut p = path;
        loop {
            let found = if value_first {
                self.values.get(p).or_else(|| self.keys.get(p))
            } else {
                self.keys.get(p).or_else(|| self.values.get(p))
            };
            if let Some(s) = found {
                return Some(*s);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }
}

/// The path of a mapping entry.
pub fn child(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// The path of a list item.
pub fn item(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// The path one level up (`a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``).
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// Size of a node once aliases are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: u64,
    bytes: u64,
}

impl Weight {
    fn add(&mut self, other: Weight) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// What the open node on top of the stack is.
enum Open {
    Map {
        /// The next node is a key.
        expecting_key: bool,
        /// The current entry's key (`?` for a key that is not a scalar).
        key: Option<String>,
        /// Keys seen so far, for duplicate detection.
        seen: HashMap<String, Span>,
        /// Whether the mapping's own position was moved to its first key.
        placed: bool,
    },
    Seq {
        next: usize,
    },
}

struct Frame {
    open: Open,
    path: String,
    anchor: usize,
    weight: Weight,
    /// Character index of the start marker, to place block mappings.
    start: usize,
}

/// How a node fits into its parent.
enum Role {
    Key,
    Value(String),
}

struct Walk {
    index: PositionIndex,
    stack: Vec<Frame>,
    /// Expanded weight of finished anchored nodes, by anchor id.
    anchors: HashMap<usize, Weight>,
    /// Text of anchored scalars, for aliases used as keys.
    anchor_text: HashMap<usize, String>,
    total: Weight,
    /// Whether an alias was seen (for the wording of a size error).
    aliased: bool,
    documents: usize,
    errors: Vec<Diagnostic>,
    /// Just past the last character of the text.
    end: Span,
}

fn marker_span(m: &Marker) -> Span {
    Span {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        // yaml-rust2 counts columns from 0 (in characters).
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

/// Walks `text`. On success, the position index; otherwise the problems
/// that stop any further reading (syntax, size, nesting, duplicate keys).
///
/// yaml-rust2 refuses a tab right after a `:` indicator, which libyaml (and
/// so serde_yaml_ng, and Kairos's Go decoder) accepts as whitespace. The
/// walk sees such tabs as spaces: the same length, so every position is
/// unchanged, and no structure changes (inside a scalar only the scalar's
/// text would differ, and the walk does not keep scalar text).
pub fn scan(text: &str) -> Result<PositionIndex, Vec<Diagnostic>> {
    let text = if text.contains(":\t") {
        std::borrow::Cow::Owned(text.replace(":\t", ": "))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let mut walk = Walk {
        index: PositionIndex::default(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        anchor_text: HashMap::new(),
        total: Weight::default(),
        aliased: false,
        documents: 0,
        errors: Vec::new(),
        end: Span::at_byte(&text, text.len()),
    };
    let mut parser = Parser::new_from_str(&text);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            Err(e) => {
                walk.errors.push(Diagnostic::file(
                    Severity::Error,
                    Some(marker_span(e.marker()).min(walk.end)),
                    "",
                    format!("invalid YAML: {}", e.info()),
                ));
                return Err(walk.errors);
            }
        };
        match walk.event(event, &mark) {
            Ok(true) => {}
            Ok(false) => break,
            Err(d) => {
                walk.errors.push(d);
                return Err(walk.errors);
            }
        }
    }
    if walk.errors.is_empty() {
        Ok(walk.index)
    } else {
        Err(walk.errors)
    }
}

impl Walk {
    /// Where `mark` is, or the end of the text when it is past it (at the
    /// end of a file without a final line break, yaml-rust2 marks the line
    /// after the last, where no editor can jump to).
    fn span(&self, mark: &Marker) -> Span {
        marker_span(mark).min(self.end)
    }

    /// Handles one event; `Ok(false)` at the end of the stream. An `Err` is
    /// a problem that stops the walk.
    fn event(&mut self, event: Event, mark: &Marker) -> Result<bool, Diagnostic> {
        match event {
            Event::StreamEnd => return Ok(false),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::file(
                        Severity::Error,
                        Some(self.span(mark)),
                        "",
                        "a second YAML document starts here: a cloud-config is one document \
                         (remove the `---` line or split the file)",
                    ));
                }
            }
            Event::Scalar(text, _, anchor, _) => {
                let weight = Weight {
                    nodes: 1,
                    bytes: text.len() as u64,
                };
                self.node_start(mark, Some(&text))?;
                if anchor != 0 {
                    self.anchors.insert(anchor, weight);
                    self.anchor_text.insert(anchor, text);
                }
                self.node_end(weight, mark)?;
            }
            Event::Alias(id) => {
                let Some(weight) = self.anchors.get(&id).copied() else {
                    return Err(Diagnostic::file(
                        Severity::Error,
                        Some(self.span(mark)),
                        "",
                        "this alias refers to a node that contains it (a recursive alias)",
                    ));
                };
                self.aliased = true;
                let key_text = self.anchor_text.get(&id).cloned();
                self.node_start(mark, key_text.as_deref().or(Some("*")))?;
                self.node_end(weight, mark)?;
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let path = match self.node_start(mark, None)? {
                    Role::Value(path) => path,
                    Role::Key => child(self.stack.last().map_or("", |t| t.path.as_str()), "?"),
                };
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::file(
                        Severity::Error,
                        Some(self.span(mark)),
                        "",
                        format!("lists and mappings nest deeper than {MAX_DEPTH} levels here"),
                    ));
                }
                let open = if is_map {
                    Open::Map {
                        expecting_key: true,
                        key: None,
                        seen: HashMap::new(),
                        placed: false,
                    }
                } else {
                    Open::Seq { next: 0 }
                };
                self.stack.push(Frame {
                    open,
                    path,
                    anchor,
                    weight: Weight::default(),
                    start: mark.index(),
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(frame) = self.stack.pop() {
                    let mut weight = frame.weight;
                    weight.add(Weight { nodes: 1, bytes: 0 });
                    if frame.anchor != 0 {
                        self.anchors.insert(frame.anchor, weight);
                    }
                    self.node_end(weight, mark)?;
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(true)
    }

    /// Places a node that starts at `mark` in its parent. `key_text` is the
    /// scalar text when the node is a scalar (or an alias of one).
    fn node_start(&mut self, mark: &Marker, key_text: Option<&str>) -> Result<Role, Diagnostic> {
        let at = self.span(mark);
        let Some(top) = self.stack.last_mut() else {
            self.index.values.insert(String::new(), at);
            return Ok(Role::Value(String::new()));
        };
        let role = match &mut top.open {
            Open::Seq { next } => {
                *next += 1;
                Role::Value(item(&top.path, *next - 1))
            }
            Open::Map {
                expecting_key: false,
                key,
                ..
            } => Role::Value(child(&top.path, key.as_deref().unwrap_or("?"))),
            Open::Map {
                expecting_key: true,
                key,
                seen,
                placed,
            } => {
                // A block mapping's start event is marked after its first key;
                // the mapping is where that key is.
                if !*placed {
                    *placed = true;
                    if mark.index() < top.start {
                        self.index.values.insert(top.path.clone(), at);
                    }
                }
                let text = key_text.unwrap_or("?").to_owned();
                let path = child(&top.path, &text);
                if key_text.is_some() {
                    if let Some(first) = seen.get(&text) {
                        self.errors.push(Diagnostic::file(
                            Severity::Error,
                            Some(at),
                            path.clone(),
                            format!(
                                "duplicate key: `{text}` is already set at line {}, column {} (YAML forbids repeating a key)",
                                first.line, first.column
                            ),
                        ));
                    } else {
                        seen.insert(text.clone(), at);
                        self.index.keys.insert(path, at);
                    }
                }
                *key = Some(text);
                return Ok(Role::Key);
            }
        };
        if let Role::Value(path) = &role {
            self.index.values.insert(path.clone(), at);
        }
        Ok(role)
    }

    /// Accounts for a finished node of `weight` and moves its parent on.
    fn node_end(&mut self, weight: Weight, mark: &Marker) -> Result<(), Diagnostic> {
        self.total.add(weight);
        if self.total.nodes > MAX_NODES || self.total.bytes > MAX_EXPANDED_BYTES {
            let what = format!(
                "more than {MAX_NODES} nodes or {} MiB of text",
                MAX_EXPANDED_BYTES >> 20
            );
            let message = if self.aliased {
                format!("the document expands to {what} once aliases are resolved (an alias bomb?); refusing it")
            } else {
                format!("the document holds {what}, far more than a cloud-config; refusing it")
            };
            return Err(Diagnostic::file(Severity::Error, Some(self.span(mark)), "", message));
        }
        if let Some(top) = self.stack.last_mut() {
            top.weight.add(weight);
            if let Open::Map { expecting_key, .. } = &mut top.open {
                *expecting_key = !*expecting_key;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Option<Span> {
        Some(Span { line, column })
    }

    #[test]
    fn indexes_keys_and_values() {
        let text = "#cloud-config\np2p:\n  network_token: \"abc\"\n  mesh:\n    listen_port: abc\n    \
                    bootstrap_peers: [\"1.2.3.4:5\", x]\n  vpn: {create: yes}\nusers:\n  - name: é\n    passwd: x\n";
        let ix = scan(text).unwrap();
        assert_eq!(ix.key("p2p"), at(2, 1));
        assert_eq!(ix.value("p2p"), at(3, 3), "a block mapping starts at its first key");
        assert_eq!(ix.key("p2p.network_token"), at(3, 3));
        assert_eq!(ix.value("p2p.network_token"), at(3, 18));
        assert_eq!(ix.value("p2p.mesh.listen_port"), at(5, 18));
        assert_eq!(ix.value("p2p.mesh.bootstrap_peers"), at(6, 22));
        assert_eq!(ix.value("p2p.mesh.bootstrap_peers[1]"), at(6, 36));
        assert_eq!(ix.value("p2p.vpn"), at(7, 8), "a flow mapping starts at its brace");
        assert_eq!(ix.value("p2p.vpn.create"), at(7, 17));
        assert_eq!(ix.value("users[0].passwd"), at(10, 13));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(ix.value("p2p.mesh.listen_port.deeper"), at(5, 18));
        assert_eq!(ix.key("p2p.nothing"), at(2, 1));
    }

    #[test]
    fn columns_count_characters() {
        let ix = scan("kairos:\n  network_id: \"é\"\n  role: é\n  dns: x\n").unwrap();
        assert_eq!(ix.value("kairos.role"), at(3, 9));
        let ix = scan("{é: 1, role: x}\n").unwrap();
        assert_eq!(ix.value("role"), at(1, 14));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = scan("kairos:\n  role: a\n   x: 1\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].span(), at(3, 5));
        assert!(e[0].message.starts_with("invalid YAML: "), "{}", e[0].message);
        let e = scan("a: *nope\n").unwrap_err();
        assert_eq!(e[0].span(), at(1, 4));
    }

    #[test]
    fn duplicate_keys_are_all_reported() {
        let e = scan("p2p:\n  role: a\n  role: b\nk3s: 1\nk3s: 2\n").unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].span(), at(3, 3));
        assert_eq!(e[0].path, "p2p.role");
        assert!(
            e[0].message.contains("already set at line 2, column 3"),
            "{}",
            e[0].message
        );
        assert_eq!(e[1].span(), at(5, 1));
    }

    #[test]
    fn accepts_a_tab_after_a_colon_as_libyaml_does() {
        let ix = scan("a:\tb\nc: {x:\ty}\n").unwrap();
        assert_eq!(ix.value("a"), at(1, 4));
        assert_eq!(ix.value("c.x"), at(2, 8));
    }

    #[test]
    fn refuses_a_second_document() {
        let e = scan("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e[0].message.contains("second YAML document"));
        assert_eq!(e[0].span(), at(2, 1));
    }

    #[test]
    fn refuses_alias_bombs_without_expanding() {
        // Billion laughs: 9 levels of 10 aliases, 10^9 nodes expanded.
        let mut text = String::from("a0: &a0 [lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = scan(&text).unwrap_err();
        assert!(e[0].message.contains("alias bomb"), "{}", e[0].message);
        assert!(started.elapsed().as_secs() < 5);

        // One large anchored string used many times.
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(100_000),
            vec!["*a"; 100].join(", ")
        );
        assert!(scan(&text).unwrap_err()[0].message.contains("alias bomb"));

        // Without aliases the wording says what is too big.
        let many: String = (0..60_000).map(|i| format!("k{i}: v\n")).collect();
        let e = scan(&many).unwrap_err();
        assert!(
            e[0].message.contains("far more than a cloud-config"),
            "{}",
            e[0].message
        );

        // Modest reuse is fine.
        assert!(scan("base: &b {x: 1}\none: *b\ntwo: *b\n").is_ok());
    }

    #[test]
    fn refuses_recursive_aliases_and_deep_nesting() {
        assert!(scan("a: &a [1, *a]\n").unwrap_err()[0].message.contains("recursive"));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = scan(&deep).unwrap_err();
        assert!(e[0].message.contains("nest deeper"), "{}", e[0].message);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(scan(&ok).is_ok());
    }

    #[test]
    fn paths() {
        assert_eq!(child("", "p2p"), "p2p");
        assert_eq!(child("p2p", "mesh"), "p2p.mesh");
        assert_eq!(item("p2p.mesh.bootstrap_peers", 2), "p2p.mesh.bootstrap_peers[2]");
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a.b"), "a");
        assert_eq!(parent("a"), "");
    }
}
