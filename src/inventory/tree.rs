//! A YAML document as a tree whose every node knows where it was written.
//!
//! yaml-rust2 does the parsing; this only assembles its marked events into nodes, keeping
//! duplicate mapping keys (so they can be reported) and scalar styles (so `"22"` and `22` can
//! be told apart where it matters).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column of a node's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Mark {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `plain` is false for quoted and block scalars, and for `!!str`-tagged ones.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in file order, duplicates kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// YAML 1.2 core-schema null: an empty value, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of thing this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing (null)".into(),
            Kind::Scalar { text, .. } => format!("`{}`", shorten(text)),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

/// Keeps messages readable when someone pastes a whole file into one field.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// Why a text is not one usable YAML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("not valid YAML: {info}")]
    Syntax { mark: Mark, info: String },
    #[error("holds several YAML documents (`---`): an inventory is one document")]
    SeveralDocuments { mark: Mark },
    #[error("expands to more than {MAX_NODES} nodes (aliases?): an inventory is far smaller")]
    TooLarge { mark: Mark },
    #[error(
        "is indented or nested more than {MAX_INDENT} columns deep: an inventory needs far less"
    )]
    TooDeep { mark: Mark },
    #[error("`<<` merges a mapping or a list of mappings (like `<<: *defaults`), found {found}")]
    BadMerge { mark: Mark, found: String },
}

impl TreeError {
    pub fn mark(&self) -> Mark {
        match self {
            TreeError::Syntax { mark, .. }
            | TreeError::SeveralDocuments { mark }
            | TreeError::TooLarge { mark }
            | TreeError::TooDeep { mark }
            | TreeError::BadMerge { mark, .. } => *mark,
        }
    }
}

/// Bounds alias expansion, which could otherwise grow exponentially ("billion laughs").
const MAX_NODES: usize = 100_000;

/// yaml-rust2 recurses once per nesting level and bounds only flow nesting (255 levels);
/// block nesting grows only with a line's leading blanks and `-`/`?`/`:` indicators, so bounding
/// those keeps the parser's stack use small enough for any thread (tested in a 2 MiB one).
const MAX_INDENT: usize = 100;

fn too_deep(text: &str) -> Option<Mark> {
    text.lines().enumerate().find_map(|(i, line)| {
        let prefix = line
            .chars()
            .take_while(|c| matches!(c, ' ' | '\t' | '-' | '?' | ':'))
            .count();
        (prefix > MAX_INDENT).then_some(Mark {
            line: i + 1,
            column: MAX_INDENT + 1,
        })
    })
}

/// Parse one YAML document; `Ok(None)` when the text holds no document at all.
pub fn parse(text: &str) -> Result<Option<Node>, TreeError> {
    if let Some(mark) = too_deep(text) {
        return Err(TreeError::TooDeep { mark });
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|e| TreeError::Syntax {
            mark: Mark::from(*e.marker()),
            info: e.info().to_string(),
        })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.docs.into_iter().next())
}

/// A container being filled: its node and, for mappings, a key waiting for its value.
struct Open {
    node: Node,
    anchor: usize,
    pending_key: Option<Node>,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    error: Option<TreeError>,
}

impl Builder {
    fn count(&mut self, n: usize, mark: Mark) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.error.get_or_insert(TreeError::TooLarge { mark });
            return false;
        }
        true
    }

    /// Attach a finished node to its parent (or make it the document).
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            if !self.docs.is_empty() {
                self.error
                    .get_or_insert(TreeError::SeveralDocuments { mark: node.mark });
            }
            self.docs.push(node);
            return;
        };
        match &mut parent.node.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match parent.pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => parent.pending_key = Some(node),
            },
            Kind::Scalar { .. } => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = Mark::from(marker);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, mark) {
                    return;
                }
                let is_str_tag = tag.is_some_and(|t| t.suffix == "str");
                let plain = style == TScalarStyle::Plain && !is_str_tag;
                self.finish(
                    Node {
                        mark,
                        kind: Kind::Scalar { text, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if !self.count(1, mark) {
                    return;
                }
                let kind = if matches!(ev, Event::SequenceStart(..)) {
                    Kind::Seq(Vec::new())
                } else {
                    Kind::Map(Vec::new())
                };
                self.stack.push(Open {
                    node: Node { mark, kind },
                    anchor,
                    pending_key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(mut open) = self.stack.pop() {
                    // A block mapping's start marker lands just past its first key's first
                    // character; the key itself is where a reader looks.
                    if let Kind::Map(entries) = &mut open.node.kind {
                        if let Some((key, _)) = entries.first() {
                            open.node.mark = key.mark;
                        }
                        if let Err(e) = resolve_merges(entries) {
                            self.error.get_or_insert(e);
                            return;
                        }
                    }
                    self.finish(open.node, open.anchor);
                }
            }
            Event::Alias(id) => {
                // An unknown anchor is a parse error in yaml-rust2; ignore it defensively.
                if let Some(node) = self.anchors.get(&id).cloned() {
                    if !self.count(node_count(&node), mark) {
                        return;
                    }
                    self.finish(node, 0);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.kind, Kind::Scalar { text, plain: true } if text == "<<")
}

/// YAML merge keys (`<<: *defaults` or `<<: [*a, *b]`): the merged mappings' entries join this
/// one unless written here; with a list, earlier mappings win. Explicit entries keep their
/// order (and duplicates, which `decode` reports); merged ones follow.
fn resolve_merges(entries: &mut Vec<(Node, Node)>) -> Result<(), TreeError> {
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return Ok(());
    }
    let (merges, own): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|(k, _)| is_merge_key(k));
    *entries = own;
    let mut sources = Vec::new();
    for (_, value) in merges {
        match value.kind {
            Kind::Map(m) => sources.push(m),
            Kind::Seq(items) => {
                for item in items {
                    match item.kind {
                        Kind::Map(m) => sources.push(m),
                        _ => {
                            return Err(TreeError::BadMerge {
                                mark: item.mark,
                                found: item.describe(),
                            });
                        }
                    }
                }
            }
            _ => {
                return Err(TreeError::BadMerge {
                    mark: value.mark,
                    found: value.describe(),
                });
            }
        }
    }
    for (key, value) in sources.into_iter().flatten() {
        if !entries.iter().any(|(k, _)| k.kind == key.kind) {
            entries.push((key, value));
        }
    }
    Ok(())
}

fn node_count(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Mark {
        Mark { line, column }
    }

    #[test]
    fn marks_point_at_keys_and_values() {
        let doc = parse("a: 1\nb:\n  - x: 'q'\n    y: ~\n").unwrap().unwrap();
        let Kind::Map(entries) = &doc.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.mark, at(1, 1));
        assert_eq!(entries[0].1.mark, at(1, 4));
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        let Kind::Map(host) = &items[0].kind else {
            panic!("not a map")
        };
        assert_eq!(items[0].mark, at(3, 5));
        assert_eq!(entries[1].1.mark, at(3, 3));
        assert_eq!(host[1].0.mark, at(4, 5));
        assert!(host[1].1.is_null());
        assert_eq!(
            host[0].1.kind,
            Kind::Scalar {
                text: "q".into(),
                plain: false
            }
        );
    }

    #[test]
    fn deep_block_nesting_is_refused_before_parsing() {
        let deep = "- ".repeat(50_000) + "x";
        assert_eq!(
            parse(&deep).unwrap_err(),
            TreeError::TooDeep { mark: at(1, 101) }
        );
        // The deepest accepted block nesting, plus the deepest flow nesting yaml-rust2 allows,
        // still parses within a test thread's stack.
        let mut text = String::new();
        for i in 0..MAX_INDENT {
            text.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        text.push_str(&" ".repeat(MAX_INDENT));
        text.push_str(&"[".repeat(254));
        text.push_str(&"]".repeat(254));
        assert!(parse(&text).unwrap().is_some());
    }

    fn keys(node: &Node) -> Vec<(String, String)> {
        let Kind::Map(entries) = &node.kind else {
            panic!("not a map")
        };
        entries
            .iter()
            .map(|(k, v)| {
                let text = |n: &Node| match &n.kind {
                    Kind::Scalar { text, .. } => text.clone(),
                    _ => "?".into(),
                };
                (text(k), text(v))
            })
            .collect()
    }

    #[test]
    fn merge_keys_fill_what_is_not_written() {
        let doc = parse("d: &d {a: 1, b: 2}\ne: &e {b: 9, c: 3}\nx:\n  b: 5\n  <<: [*d, *e]\n")
            .unwrap()
            .unwrap();
        let Kind::Map(entries) = &doc.kind else {
            panic!("not a map")
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            keys(&entries[2].1),
            pairs(&[("b", "5"), ("a", "1"), ("c", "3")])
        );
        assert_eq!(
            parse("a: {<<: 3}\n").unwrap_err(),
            TreeError::BadMerge {
                mark: at(1, 9),
                found: "`3`".into()
            }
        );
        // A quoted `<<` is an ordinary key.
        let doc = parse("'<<': {a: 1}\n").unwrap().unwrap();
        assert_eq!(keys(&doc)[0].0, "<<");
    }

    #[test]
    fn empty_text_has_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn several_documents_are_refused() {
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").unwrap_err(),
            TreeError::SeveralDocuments { mark: at(3, 1) }
        );
    }

    #[test]
    fn aliases_expand_but_are_bounded() {
        let doc = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        let Kind::Map(entries) = &doc.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].1.kind, entries[1].1.kind);

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(parse(&bomb), Err(TreeError::TooLarge { .. })));
    }
}
