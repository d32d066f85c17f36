//! Shared by every command that reads an inventory: load it, warnings on stderr.

use std::path::Path;

use crate::inventory::{self, Inventory};

pub fn load_inventory(path: &Path) -> anyhow::Result<Inventory> {
    let inv = inventory::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &inv.warnings {
        eprintln!("warning: {w}");
    }
    Ok(inv)
}
