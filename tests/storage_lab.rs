//! Issue 15 item 5 on a real 2-node lab: `init` installs the default StorageClass `local-path`
//! (Rancher's local-path-provisioner, built by scripts/build-mirror.sh). A claim that names no
//! class binds when its pod starts, what the pod wrote survives the pod's deletion (a new pod
//! on the same claim reads it back), and deleting the claim removes its volume.

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;

fn apply(c: &Cluster, dir: &Path, name: &str, doc: serde_json::Value) {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, doc.to_string()).expect("write manifest");
    let out = c.kubectl(&["apply", "-f", &f.to_string_lossy()]);
    assert!(out.status.success(), "apply {name}: {}", stderr(&out));
}

fn pod(busybox: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "writer", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": busybox, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "sleep 3600"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}})
}

#[test]
fn default_storage_class_binds_claims_and_keeps_data_across_pods() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let has_provisioner = std::fs::read_to_string(mirror.join("manifest.json"))
        .is_ok_and(|m| m.contains("\"local-path-provisioner\""));
    assert!(
        has_provisioner,
        "the mirror has no local-path-provisioner image: run scripts/build-mirror.sh"
    );
    let busybox = image_ref(&mirror, "busybox");
    let c = Cluster {
        lab: Lab::up(2),
        mirror,
    };
    let t0 = Instant::now();
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    eprintln!("storage-lab: init {:.1} s", t0.elapsed().as_secs_f64());

    // The class is there and is the default.
    let sc = c.wait_for(&["get", "storageclass", "-o", "json"], 60, |t| {
        t.contains("local-path")
    });
    let sc: serde_json::Value = serde_json::from_str(&sc).expect("storageclass json");
    let default = sc["items"].as_array().into_iter().flatten().find(|i| {
        i["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    });
    assert_eq!(
        default.map(|d| d["metadata"]["name"].clone()),
        Some(serde_json::json!("local-path")),
        "{sc}"
    );

    // A claim without a class, and a pod using it: bound once the pod is scheduled.
    let dir = c.lab.state.path().to_path_buf();
    apply(
        &c,
        &dir,
        "claim",
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Mi"}}}}),
    );
    let t1 = Instant::now();
    apply(&c, &dir, "pod", pod(&busybox));
    c.wait_for(
        &["get", "pvc", "data", "-o", "jsonpath={.status.phase}"],
        180,
        |t| t == "Bound",
    );
    c.wait_for(
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        120,
        |t| t == "Running",
    );
    eprintln!(
        "storage-lab: claim bound and pod running in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    let out = c.kubectl(&[
        "exec",
        "writer",
        "--",
        "sh",
        "-c",
        "echo kept-by-local-path > /data/proof && sync",
    ]);
    assert!(out.status.success(), "write: {}", stderr(&out));
    let node = stdout(&c.kubectl(&["get", "pod", "writer", "-o", "jsonpath={.spec.nodeName}"]));

    // The pod goes; a new one on the same claim reads the file back (on the same node: the
    // volume is a directory there, and the PV's node affinity brings the pod back to it).
    let out = c.kubectl(&["delete", "pod", "writer", "--wait=true"]);
    assert!(out.status.success(), "delete pod: {}", stderr(&out));
    apply(&c, &dir, "pod", pod(&busybox));
    c.wait_for(
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        120,
        |t| t == "Running",
    );
    let again = stdout(&c.kubectl(&["get", "pod", "writer", "-o", "jsonpath={.spec.nodeName}"]));
    assert_eq!(node, again, "the new pod runs where the volume is");
    let out = c.kubectl(&["exec", "writer", "--", "cat", "/data/proof"]);
    assert_eq!(
        stdout(&out).trim(),
        "kept-by-local-path",
        "{}",
        stderr(&out)
    );

    // Claim deleted: its PersistentVolume goes too (reclaimPolicy Delete).
    let pv = stdout(&c.kubectl(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]));
    assert!(!pv.trim().is_empty());
    let out = c.kubectl(&["delete", "pod", "writer", "--wait=true"]);
    assert!(out.status.success());
    let out = c.kubectl(&["delete", "pvc", "data", "--wait=true"]);
    assert!(out.status.success());
    c.wait_for(&["get", "pv", "-o", "name"], 120, |t| {
        !t.contains(pv.trim())
    });
    eprintln!("storage-lab: total {:.1} s", t0.elapsed().as_secs_f64());
}
