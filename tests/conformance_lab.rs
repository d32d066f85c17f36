//! Issue 17: the upstream conformance suite (e2e.test of the cluster's Kubernetes version, built
//! by scripts/build-conformance.sh) against a fresh 3-node lab after `init`, through
//! scripts/conformance.sh (images side-loaded, parallel part then [Serial] part).
//!
//! CI runs a fixed, fast subset: the [sig-network] conformance tests (Services, DNS,
//! EndpointSlices, Ingress/IngressClass APIs, proxy, networking from pods). With
//! DIRECTOR_BOOT_CONFORMANCE=full (`scripts/test.sh --conformance`) it runs the whole
//! conformance set instead. Either way every selected test must pass.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

/// CI's subset: every [sig-network] conformance test (DNS included).
const CI_FOCUS: &str = r"\[sig-network\]";

fn full_run() -> bool {
    std::env::var_os("DIRECTOR_BOOT_CONFORMANCE").is_some_and(|v| v == "full")
}

#[test]
fn conformance_suite_passes_on_a_fresh_lab() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let suite = cache_dir().join("conformance/bin/e2e.test");
    if !suite.exists() && std::env::var_os("DIRECTOR_BOOT_REQUIRE_CONFORMANCE").is_none() {
        eprintln!(
            "skipped: no conformance suite at {} (scripts/build-conformance.sh builds it)",
            suite.display()
        );
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up(3),
        mirror,
    };
    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );
    c.wait_for(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"], 120, |t| {
        ["node1=True", "node2=True", "node3=True"].iter().all(|n| t.contains(n))
    });

    require_lab_bridge();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/conformance.sh");
    let mut cmd = Command::new(script);
    cmd.arg(&c.lab.inventory)
        .env("DIRECTOR_BOOT", BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", c.lab.state.path())
        .env(
            "KUBECONFIG",
            c.lab.state.path().join("clusters/lab/admin.conf"),
        );
    if !full_run() {
        cmd.args(["--focus", CI_FOCUS]);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run scripts/conformance.sh");
    let text = stdout(&out);
    eprintln!(
        "{}\n{text}\nconformance run took {:.0} s",
        stderr(&out),
        started.elapsed().as_secs_f64()
    );
    let summary = text
        .lines()
        .rfind(|l| l.starts_with("conformance: "))
        .unwrap_or_default()
        .to_string();
    assert!(
        !summary.is_empty(),
        "scripts/conformance.sh printed no summary line"
    );
    assert!(
        out.status.success() && summary.contains(" 0 failed"),
        "conformance tests failed: {summary}\n{text}"
    );
    let passed: u32 = summary
        .trim_start_matches("conformance: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 0, "no conformance test ran: {summary}");
}
