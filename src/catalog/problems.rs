//! Problems found in an app or a cluster spec, collected so one run reports all of them, and
//! the index from a field's path (`roles[1].dependsOn[0]`) to where it was written.

use std::collections::HashMap;
use std::fmt;

use super::yaml::At;

/// One problem: where, which field, what is wrong and what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: At,
    /// Path of the field, e.g. `roles[1].dependsOn[0]`; empty when the place says it all.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.at, self.message)
        } else {
            write!(f, "{}: {}: {}", self.at, self.field, self.message)
        }
    }
}

#[derive(Debug, Default)]
pub struct Problems {
    pub list: Vec<Problem>,
}

impl Problems {
    pub fn add(&mut self, at: At, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            at,
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Where each field of a checked document was written.
#[derive(Debug, Clone)]
pub struct Index {
    /// The document itself (for fields that were never written).
    root: At,
    values: HashMap<String, At>,
    keys: HashMap<String, At>,
}

impl Index {
    pub fn new(root: At) -> Index {
        Index {
            root,
            values: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    pub fn record(&mut self, path: &str, at: &At) {
        self.values.insert(path.to_string(), at.clone());
    }

    pub fn record_key(&mut self, path: &str, at: &At) {
        self.keys.insert(path.to_string(), at.clone());
    }

    /// Where `path`'s value was written, or its nearest written parent's.
    pub fn at(&self, path: &str) -> At {
        let mut p = path;
        loop {
            if let Some(at) = self.values.get(p) {
                return at.clone();
            }
            match parent(p) {
                Some(up) => p = up,
                None => return self.root.clone(),
            }
        }
    }

    /// Where `path`'s key was written (for mapping entries), else where its value was.
    pub fn key_at(&self, path: &str) -> At {
        self.keys
            .get(path)
            .cloned()
            .unwrap_or_else(|| self.at(path))
    }

    /// Whether `path` was written at all (as opposed to defaulted).
    pub fn has(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> none.
fn parent(path: &str) -> Option<&str> {
    path.rfind(['.', '['])
        .map(|i| &path[..i])
        .filter(|p| !p.is_empty())
}

/// `parent.child`, or just `child` at the top level.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_fall_back_to_the_nearest_parent() {
        let mut ix = Index::new(At::file("a.yaml"));
        let mut at = At::file("a.yaml");
        at.mark = Some(crate::inventory::tree::Mark { line: 3, column: 5 });
        ix.record("roles[1]", &at);
        assert_eq!(ix.at("roles[1].dependsOn[0]").to_string(), "a.yaml:3:5");
        assert_eq!(ix.at("services").to_string(), "a.yaml");
    }
}
