//! Collects problems as they are found, so one run reports all of them.

use std::path::Path;

use super::Problem;
use super::tree::Mark;

pub struct Problems<'a> {
    file: &'a Path,
    pub list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path) -> Self {
        Problems {
            file,
            list: Vec::new(),
        }
    }

    /// Record a problem at `mark` (`None` when the field was never written, e.g. a default).
    pub fn add(
        &mut self,
        mark: Option<Mark>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.list
            .push(make(self.file, mark, field.into(), message.into()));
    }
}

pub fn make(file: &Path, mark: Option<Mark>, field: String, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: mark.map(|m| m.line),
        column: mark.map(|m| m.column),
        field,
        message,
    }
}

/// `parent.child`, or just `child` at the top level.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}
