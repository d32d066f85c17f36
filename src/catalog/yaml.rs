//! YAML documents whose every node knows where it came from: a file position (parsed with the
//! inventory's span-keeping tree) or a command-line argument (`--set worker.members=3`).
//!
//! The cluster spec is layered (the app's default spec, then `--cluster FILE`, then each
//! `--set`), so a value's origin is per node, not per document.

use std::fmt;
use std::sync::Arc;

use crate::inventory::tree::{self, Kind, Mark, Node, TreeError};

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file, as the user should see its path (`catalog/spark/app.yaml`, `./mine.yaml`).
    File(String),
    /// A command-line argument, verbatim (`--set worker.members=3`).
    Arg(String),
}

/// Where one node was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub source: Arc<Source>,
    pub mark: Option<Mark>,
}

impl At {
    pub fn file(path: &str) -> At {
        At {
            source: Arc::new(Source::File(path.to_string())),
            mark: None,
        }
    }

    pub fn arg(arg: &str) -> At {
        At {
            source: Arc::new(Source::Arg(arg.to_string())),
            mark: None,
        }
    }

    pub fn is_arg(&self) -> bool {
        matches!(*self.source, Source::Arg(_))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&*self.source, self.mark) {
            (Source::File(path), Some(m)) => write!(f, "{path}:{}:{}", m.line, m.column),
            (Source::File(path), None) | (Source::Arg(path), _) => write!(f, "{path}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct YNode {
    pub at: At,
    pub kind: YKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum YKind {
    /// `plain` is false for quoted and block scalars.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<YNode>),
    /// Entries in written order, duplicates kept so they can be reported.
    Map(Vec<(YNode, YNode)>),
}

impl YNode {
    pub fn scalar(text: &str, plain: bool, at: At) -> YNode {
        YNode {
            at,
            kind: YKind::Scalar {
                text: text.to_string(),
                plain,
            },
        }
    }

    /// A scalar's text.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            YKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries of the mapping under `key`, if this is a mapping holding one.
    pub fn kind_map(&self, key: &str) -> Option<&[(YNode, YNode)]> {
        let YKind::Map(entries) = &self.kind else {
            return None;
        };
        entries
            .iter()
            .rev()
            .find_map(|(k, v)| match (&k.kind, &v.kind) {
                (YKind::Scalar { text, .. }, YKind::Map(inner)) if text == key => {
                    Some(inner.as_slice())
                }
                _ => None,
            })
    }

    /// YAML 1.2 core-schema null: an empty value, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, YKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of thing this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            YKind::Scalar { .. } if self.is_null() => "nothing (null)".into(),
            YKind::Scalar { text, .. } => format!("`{}`", tree::shorten(text)),
            YKind::Seq(_) => "a list".into(),
            YKind::Map(_) => "a mapping".into(),
        }
    }

    fn from_tree(node: Node, source: &Arc<Source>) -> YNode {
        let at = At {
            source: source.clone(),
            mark: Some(node.mark),
        };
        let kind = match node.kind {
            Kind::Scalar { text, plain } => YKind::Scalar { text, plain },
            Kind::Seq(items) => YKind::Seq(
                items
                    .into_iter()
                    .map(|n| YNode::from_tree(n, source))
                    .collect(),
            ),
            Kind::Map(entries) => YKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (YNode::from_tree(k, source), YNode::from_tree(v, source)))
                    .collect(),
            ),
        };
        YNode { at, kind }
    }

    /// The value of a mapping key (the last one written, as YAML loaders do).
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&YNode> {
        match &self.kind {
            YKind::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| matches!(&k.kind, YKind::Scalar { text, .. } if text == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a text is not one YAML document; the message reads after "path:line:col: ".
pub fn parse(text: &str, source: Source) -> Result<Option<YNode>, (At, String)> {
    let source = Arc::new(source);
    match tree::parse(text) {
        Ok(doc) => Ok(doc.map(|n| YNode::from_tree(n, &source))),
        Err(e) => {
            let at = At {
                source,
                mark: Some(e.mark()),
            };
            let message = match &e {
                TreeError::Syntax { info, .. } => format!("not valid YAML: {info}"),
                TreeError::SeveralDocuments { .. } => {
                    "holds several YAML documents (`---`): write one".into()
                }
                TreeError::TooLarge { .. } => {
                    "expands to too many nodes (aliases?): write it out plainly".into()
                }
                TreeError::TooDeep { .. } => "is nested too deep: flatten it".into(),
                TreeError::BadMerge { .. } => e.to_string(),
            };
            Err((at, message))
        }
    }
}

/// `over` laid over `base`: mappings merge key by key, anything else is replaced whole.
pub fn merge(base: YNode, over: YNode) -> YNode {
    if over.is_null() {
        return base;
    }
    match (base.kind, over.kind) {
        (YKind::Map(mut entries), YKind::Map(over_entries)) => {
            for (key, value) in over_entries {
                let name = match &key.kind {
                    YKind::Scalar { text, .. } => Some(text.clone()),
                    _ => None,
                };
                let found = name.as_ref().and_then(|name| {
                    entries.iter().position(
                        |(k, _)| matches!(&k.kind, YKind::Scalar { text, .. } if text == name),
                    )
                });
                match found {
                    Some(i) => {
                        let (_, old) = entries.remove(i);
                        entries.insert(i, (key, merge(old, value)));
                    }
                    None => entries.push((key, value)),
                }
            }
            YNode {
                at: base.at,
                kind: YKind::Map(entries),
            }
        }
        (_, kind) => YNode { at: over.at, kind },
    }
}

/// `node` without the mapping entry `key` (no-op for anything but a mapping).
pub fn without(mut node: YNode, key: &str) -> YNode {
    if let YKind::Map(entries) = &mut node.kind {
        entries.retain(|(k, _)| !matches!(&k.kind, YKind::Scalar { text, .. } if text == key));
    }
    node
}

/// A nested mapping holding `value` at `path` (`["roles", "worker", "members"]`), every node
/// attributed to the argument `at`.
pub fn nest(path: &[String], value: YNode, at: &At) -> YNode {
    path.iter().rev().fold(value, |inner, key| YNode {
        at: at.clone(),
        kind: YKind::Map(vec![(YNode::scalar(key, true, at.clone()), inner)]),
    })
}

/// A `--set` value: a flow list or mapping (`[a, b]`, `{cpu: 1}`) is parsed as YAML, anything
/// else (a tera expression `{{ ... }}` too) is one plain scalar taken verbatim, so `#` or `: `
/// in a value stay text.
pub fn set_value(text: &str, at: &At) -> Result<YNode, String> {
    let trimmed = text.trim_start();
    let template = trimmed.starts_with("{{") || trimmed.starts_with("{%");
    if !template && (trimmed.starts_with('[') || trimmed.starts_with('{')) {
        match tree::parse(text) {
            Ok(Some(node)) => {
                let mut n = YNode::from_tree(node, &at.source);
                strip_marks(&mut n);
                Ok(n)
            }
            Ok(None) => Ok(YNode::scalar("", true, at.clone())),
            Err(e) => Err(format!("the value is not valid YAML: {e}")),
        }
    } else {
        Ok(YNode::scalar(text, true, at.clone()))
    }
}

/// Positions inside a command-line value would read as file positions; drop them.
fn strip_marks(node: &mut YNode) {
    node.at.mark = None;
    match &mut node.kind {
        YKind::Scalar { .. } => {}
        YKind::Seq(items) => items.iter_mut().for_each(strip_marks),
        YKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            strip_marks(k);
            strip_marks(v);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> YNode {
        parse(text, Source::File("f.yaml".into())).unwrap().unwrap()
    }

    #[test]
    fn nodes_know_file_and_position() {
        let d = doc("a:\n  b: 1\n");
        let b = d.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.at.to_string(), "f.yaml:2:6");
    }

    #[test]
    fn merge_replaces_leaves_and_keeps_the_override_origin() {
        let base = doc("roles:\n  worker: {members: 2, env: {A: x}}\n");
        let at = At::arg("--set worker.members=3");
        let over = nest(
            &["roles".into(), "worker".into(), "members".into()],
            YNode::scalar("3", true, at.clone()),
            &at,
        );
        let merged = merge(base, over);
        let worker = merged.get("roles").unwrap().get("worker").unwrap();
        let members = worker.get("members").unwrap();
        assert_eq!(members.at.to_string(), "--set worker.members=3");
        assert!(matches!(&members.kind, YKind::Scalar { text, .. } if text == "3"));
        assert_eq!(worker.get("env").unwrap().at.to_string(), "f.yaml:2:30");
    }

    #[test]
    fn set_values_are_verbatim_unless_flow_collections() {
        let at = At::arg("--set x");
        assert_eq!(
            set_value("a: b # c", &at).unwrap(),
            YNode::scalar("a: b # c", true, at.clone())
        );
        let list = set_value("[a, b]", &at).unwrap();
        assert!(matches!(&list.kind, YKind::Seq(items) if items.len() == 2));
        assert!(set_value("[a", &at).is_err());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let (at, msg) = parse("a: [\n", Source::File("f.yaml".into())).unwrap_err();
        assert!(at.to_string().starts_with("f.yaml:"), "{at}");
        assert!(msg.starts_with("not valid YAML"), "{msg}");
    }
}
