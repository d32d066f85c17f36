//! The inventories shipped in inventory/ stay valid as the format evolves.

mod common;

use common::*;

#[test]
fn sample_inventory_is_valid() {
    let out = db(
        std::env::temp_dir().as_path(),
        &["validate", "inventory/sample.yaml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn vagrant_inventory_is_valid_but_for_a_missing_vagrant_key() {
    let out = db(
        std::env::temp_dir().as_path(),
        &["--json", "validate", "inventory/vagrant.yaml"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    if v["valid"] == true {
        return;
    }
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["field"], "defaults.identity_file", "{v}");
}
