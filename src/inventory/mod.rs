//! Inventory: the YAML file a user writes, read and validated before any host is touched.
//!
//! CONTRACT: `load(path)` returns a fully resolved `Inventory` (model.rs) or every problem found,
//! each naming file, line/column where known, the field, and what would be valid.
//!
//! The pipeline: `tree` (yaml-rust2 events -> nodes with line/column) -> `decode` (the schema:
//! unknown/missing/ill-typed fields -> `raw` types carrying their positions) -> `validate`
//! (cross-field checks, key files via `local_files`, defaults and overrides -> `model`).
//! Every stage keeps going after a problem, so one run reports them all.

mod decode;
mod local_files;
mod model;
mod problems;
mod raw;
#[cfg(test)]
mod tests;
pub(crate) mod tree;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use validate::quorum_arithmetic;

/// One problem in an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, where the parser or a span lookup gives them.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `hosts[1].address`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

/// Every problem found in one inventory (never just the first).
#[derive(Debug, thiserror::Error)]
pub struct InventoryError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the inventory has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Read, parse, resolve and validate an inventory file.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read(path).map_err(|e| InventoryError {
        problems: vec![problems::make(
            path,
            None,
            "(file)".into(),
            format!("cannot read the inventory: {e}"),
        )],
    })?;
    match String::from_utf8(text) {
        Ok(text) => load_str(&text, path),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            Err(InventoryError {
                problems: vec![problems::make(
                    path,
                    None,
                    "(file)".into(),
                    format!("not UTF-8 text (invalid byte at offset {at}): save it as UTF-8"),
                )],
            })
        }
    }
}

/// `load` for text already in memory; `path` names it in messages and anchors relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    load_with(text, path, &validate::Dirs::for_file(path))
}

fn load_with(text: &str, path: &Path, dirs: &validate::Dirs) -> Result<Inventory, InventoryError> {
    let mut p = problems::Problems::new(path);
    match tree::parse(text) {
        Err(e) => p.add(Some(e.mark()), "(file)", e.to_string()),
        Ok(None) => p.add(
            None,
            "(file)",
            "the file holds no inventory: it needs at least `cluster` and `hosts`",
        ),
        Ok(Some(root)) => {
            if let Some(raw) = decode::decode(&root, &mut p)
                && let Some(inv) = validate::check(&raw, path, dirs, &mut p)
                && p.list.is_empty()
            {
                return Ok(inv);
            }
        }
    }
    // Checks run section by section; a reader goes through the file top to bottom.
    p.list.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
    Err(InventoryError { problems: p.list })
}
