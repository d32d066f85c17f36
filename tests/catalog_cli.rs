//! The catalog commands as a user runs them: `deploy-app --render` prints manifests with
//! secrets hidden and exits 0; bad overrides exit 1 naming the override; `deploy-app` without
//! a cluster says how to get one; `catalog validate|list|show`.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director-boot"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn render_prints_manifests_with_secrets_hidden() {
    let out = run(&[
        "deploy-app",
        "spark",
        "--render",
        "--set",
        "worker.members=3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect();
    // Secret, 2 ConfigMaps, headless Service, Spark-on-Kubernetes ServiceAccount, Role and
    // RoleBinding, 3 StatefulSets, 1+3+1 member Services.
    assert_eq!(docs.len(), 15, "{yaml}");
    assert!(yaml.contains("token: '<hidden: 64 characters>'"), "{yaml}");
    assert!(yaml.contains("name: spark-worker-2\n"), "{yaml}");
}

#[test]
fn render_rejects_bad_overrides_naming_them() {
    let out = run(&[
        "deploy-app",
        "spark",
        "--render",
        "--set",
        "worker.members=65",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "--set worker.members=65: roles.worker.members: 65 is above the role's maximum of 64"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "deploy-app",
        "spark",
        "--render",
        "--set",
        "secrets.jupyter-tokn=abc",
    ]);
    let err = text(&out.stderr);
    assert!(err.contains("--set secrets.jupyter-tokn=<hidden>"), "{err}");
    assert!(!err.contains("abc"), "{err}");
}

#[test]
fn deploy_without_a_cluster_says_to_init_one() {
    let state = tempfile::tempdir().expect("temp state");
    let out = Command::new(env!("CARGO_BIN_EXE_director-boot"))
        .env("DIRECTOR_BOOT_STATE_DIR", state.path())
        .env_remove("KUBECONFIG")
        .args(["deploy-app", "spark"])
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(err.contains("director-boot init"), "{err}");
}

#[test]
fn catalog_commands() {
    let out = run(&["catalog", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    for app in ["cassandra", "hadoop", "jupyter", "spark", "symphony"] {
        assert!(
            listed.contains(&format!("catalog/{app}: valid")),
            "{listed}"
        );
    }
    let out = run(&["catalog", "list"]);
    assert!(text(&out.stdout).starts_with("NAME"));
    let out = run(&["catalog", "show", "cassandra"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("seed    1..3"), "{shown}");
    assert!(shown.contains("addnodes,delnodes"), "{shown}");
    let out = run(&["catalog", "validate", "sprak"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("did you mean \"spark\"?"));
}
