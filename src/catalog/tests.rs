//! Catalog tests: the shipped entries validate and render; bad apps and bad overrides are
//! rejected with exact messages.

use super::*;

#[test]
fn spark_renders() {
    let r = prepare("spark", &Overrides::default()).unwrap();
    assert_eq!(r.roles.len(), 3);
}
