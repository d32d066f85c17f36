use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn members(n: usize, prefix: &str) -> Vec<Member> {
    (1..=n)
        .map(|i| Member::new(format!("{prefix}{i}"), ip(&format!("192.168.10.{i}"))))
        .collect()
}

fn spec3() -> PkiSpec {
    PkiSpec {
        cluster_name: "bigdata".into(),
        control_plane: members(3, "node"),
        etcd: members(3, "node"),
        nodes: members(3, "node"),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        apiserver_extra_sans: Vec::new(),
    }
}

fn setup() -> (TempDir, PathBuf, Report) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("pki");
    let report = ensure(&dir, &spec3()).unwrap();
    (tmp, dir, report)
}

type Snapshot = BTreeMap<PathBuf, (SystemTime, Vec<u8>, u32)>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.is_dir() {
                out.insert(
                    rel,
                    (md.modified().unwrap(), Vec::new(), md.permissions().mode()),
                );
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    (
                        md.modified().unwrap(),
                        fs::read(&p).unwrap(),
                        md.permissions().mode(),
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn changed_files(a: &Snapshot, b: &Snapshot) -> BTreeSet<PathBuf> {
    let keys: BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    keys.into_iter()
        .filter(|k| {
            let is_dir = b
                .get(k)
                .or(a.get(k))
                .is_some_and(|(_, data, mode)| data.is_empty() && mode & 0o040000 != 0);
            !is_dir && a.get(k) != b.get(k)
        })
        .collect()
}

fn parsed(dir: &Path, stem: &str) -> inspect::ParsedCert {
    let path = dir.join(layout::cert_file(stem));
    parse_cert_pem(&path, &fs::read_to_string(&path).unwrap()).unwrap()
}

fn pathset(stems: &[String]) -> BTreeSet<PathBuf> {
    stems
        .iter()
        .flat_map(|s| [layout::cert_file(s), layout::key_file(s)])
        .map(PathBuf::from)
        .collect()
}

fn expected_stems(spec: &PkiSpec) -> Vec<String> {
    let mut v: Vec<String> = ["ca", "etcd/ca", "front-proxy-ca"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(spec.leaves().unwrap().into_iter().map(|l| l.stem));
    v
}

#[test]
fn full_set_created_for_three_nodes() {
    let (_tmp, dir, report) = setup();
    let spec = spec3();
    let stems = expected_stems(&spec);
    // 3 CAs + 5 fixed leaves + 2 per etcd member + 4 components + 2 per node
    assert_eq!(stems.len(), 3 + 5 + 6 + 4 + 6);
    for want in [
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "front-proxy-client",
        "etcd/healthcheck-client",
        "etcd/server-node1",
        "etcd/peer-node3",
        "admin",
        "controller-manager",
        "scheduler",
        "kube-proxy",
        "kubelet-node2",
        "kubelet-node2-serving",
    ] {
        assert!(stems.iter().any(|s| s == want), "{want} missing from plan");
    }
    let mut want = pathset(&stems);
    want.insert("sa.key".into());
    want.insert("sa.pub".into());
    let created: BTreeSet<PathBuf> = report.created.iter().cloned().collect();
    assert_eq!(created, want);
    assert_eq!(report.created.len(), want.len(), "no file written twice");
    assert!(report.renewed.is_empty() && report.kept.is_empty());

    // Modes: dirs 0700, keys 0600, certs 0644.
    let snap = snapshot(&dir);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for (p, (_, _, mode)) in &snap {
        let m = mode & 0o777;
        match p.extension().and_then(|e| e.to_str()) {
            None => assert_eq!(m, 0o700, "{}", p.display()),
            Some("key") => assert_eq!(m, 0o600, "{}", p.display()),
            Some("crt") | Some("pub") => assert_eq!(m, 0o644, "{}", p.display()),
            other => panic!("unexpected file {} ({other:?})", p.display()),
        }
    }
    // Nothing else (no temp files) left behind.
    let files: BTreeSet<PathBuf> = snap
        .keys()
        .filter(|p| p.extension().is_some())
        .cloned()
        .collect();
    assert_eq!(files, want);
}

#[test]
fn every_leaf_verifies_against_its_ca() {
    let (_tmp, dir, _) = setup();
    for leaf in spec3().leaves().unwrap() {
        let cert = parsed(&dir, &leaf.stem);
        let ca = parsed(&dir, leaf.ca.stem());
        assert!(
            signed_by(&cert, &ca),
            "{} not signed by {}",
            leaf.stem,
            leaf.ca.stem()
        );
        assert!(!cert.is_ca, "{}", leaf.stem);
        for other in ALL_CAS.iter().filter(|c| **c != leaf.ca) {
            assert!(!signed_by(&cert, &parsed(&dir, other.stem())));
        }
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.join(layout::cert_file(leaf.ca.stem())))
            .arg(dir.join(layout::cert_file(&leaf.stem)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify {}: {}{}",
            leaf.stem,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for ca in ALL_CAS {
        let c = parsed(&dir, ca.stem());
        assert!(c.is_ca);
        assert!(signed_by(&c, &c), "{} self-signed", ca.stem());
        let days = (c.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((3649..=3650).contains(&days), "{} days", days);
    }
}

fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
    v.iter().cloned().collect()
}

fn strs(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn subjects_groups_and_sans_exact() {
    let (_tmp, dir, _) = setup();
    // (stem, CN, O, DNS SANs, IP SANs, serverAuth, clientAuth)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        bool,
        bool,
    );
    let rows: &[Row] = &[
        (
            "apiserver",
            "kube-apiserver",
            &[],
            &[
                "node1",
                "node2",
                "node3",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            &[
                "10.96.0.1",
                "192.168.10.1",
                "192.168.10.2",
                "192.168.10.3",
                "127.0.0.1",
            ],
            true,
            false,
        ),
        (
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &[APISERVER_KUBELET_CLIENT_GROUP],
            &[],
            &[],
            false,
            true,
        ),
        (
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            &[],
            &[],
            &[],
            false,
            true,
        ),
        (
            "front-proxy-client",
            "front-proxy-client",
            &[],
            &[],
            &[],
            false,
            true,
        ),
        (
            "etcd/healthcheck-client",
            "kube-etcd-healthcheck-client",
            &[],
            &[],
            &[],
            false,
            true,
        ),
        (
            "etcd/server-node2",
            "node2",
            &[],
            &["node2", "localhost"],
            &["192.168.10.2", "127.0.0.1", "::1"],
            true,
            true,
        ),
        (
            "etcd/peer-node2",
            "node2",
            &[],
            &["node2", "localhost"],
            &["192.168.10.2", "127.0.0.1", "::1"],
            true,
            true,
        ),
        (
            "admin",
            "kubernetes-admin",
            &["system:masters"],
            &[],
            &[],
            false,
            true,
        ),
        (
            "controller-manager",
            "system:kube-controller-manager",
            &[],
            &[],
            &[],
            false,
            true,
        ),
        (
            "scheduler",
            "system:kube-scheduler",
            &[],
            &[],
            &[],
            false,
            true,
        ),
        (
            "kube-proxy",
            "system:kube-proxy",
            &["system:node-proxier"],
            &[],
            &[],
            false,
            true,
        ),
        (
            "kubelet-node3",
            "system:node:node3",
            &["system:nodes"],
            &[],
            &[],
            false,
            true,
        ),
        (
            "kubelet-node3-serving",
            "system:node:node3",
            &["system:nodes"],
            &["node3"],
            &["192.168.10.3"],
            true,
            false,
        ),
    ];
    let now = OffsetDateTime::now_utc();
    for (stem, cn, o, dns, ips, server, client) in rows {
        let c = parsed(&dir, stem);
        assert_eq!(c.subject_cn, vec![cn.to_string()], "{stem}");
        assert_eq!(set(&c.subject_o), strs(o), "{stem}");
        assert_eq!(set(&c.dns), strs(dns), "{stem}");
        let want_ips: BTreeSet<IpAddr> = ips.iter().map(|s| ip(s)).collect();
        assert_eq!(set(&c.ips), want_ips, "{stem}");
        assert_eq!((c.server_auth, c.client_auth), (*server, *client), "{stem}");
        let days = (c.not_after - now).whole_days();
        assert!((364..=365).contains(&days), "{stem}: {days} days");
        assert!(c.not_before <= now);
    }
    let ca = parsed(&dir, "ca");
    assert_eq!(ca.subject_cn, vec!["kubernetes".to_string()]);
    assert_eq!(
        parsed(&dir, "etcd/ca").subject_cn,
        vec!["etcd-ca".to_string()]
    );
    assert_eq!(
        parsed(&dir, "front-proxy-ca").subject_cn,
        vec!["front-proxy-ca".to_string()]
    );
    // Serial numbers are unique.
    let serials: BTreeSet<String> = expected_stems(&spec3())
        .iter()
        .map(|s| parsed(&dir, s).serial)
        .collect();
    assert_eq!(serials.len(), expected_stems(&spec3()).len());
}

#[test]
fn openssl_parses_every_cert_and_key() {
    let (_tmp, dir, _) = setup();
    let mut n = 0;
    for (p, _) in snapshot(&dir) {
        let full = dir.join(&p);
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let args: Vec<&str> = match ext {
            "crt" => vec!["x509", "-noout", "-text", "-in"],
            "key" => vec!["pkey", "-noout", "-in"],
            "pub" => vec!["pkey", "-pubin", "-noout", "-text", "-in"],
            _ => continue,
        };
        let out = Command::new("openssl")
            .args(&args)
            .arg(&full)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} {}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if p == Path::new("apiserver.crt") {
            assert!(text.contains("IP Address:10.96.0.1"), "{text}");
            assert!(
                text.contains("DNS:kubernetes.default.svc.cluster.local"),
                "{text}"
            );
            assert!(text.contains("TLS Web Server Authentication"), "{text}");
            assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        }
        if p == Path::new("sa.pub") {
            assert!(
                text.contains("prime256v1") || text.contains("P-256"),
                "{text}"
            );
        }
        n += 1;
    }
    assert_eq!(n, 2 * expected_stems(&spec3()).len() + 2);
}

#[test]
fn second_ensure_writes_nothing() {
    let (_tmp, dir, first) = setup();
    let before = snapshot(&dir);
    let report = ensure(&dir, &spec3()).unwrap();
    let after = snapshot(&dir);
    assert!(!report.changed(), "{report}");
    assert!(report.created.is_empty() && report.renewed.is_empty());
    assert_eq!(report.kept.len(), first.created.len());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(before, after, "mtimes/contents/modes must not change");
}

#[test]
fn adding_a_node_adds_only_its_certs() {
    let (_tmp, dir, _) = setup();
    let before = snapshot(&dir);
    let mut spec = spec3();
    spec.nodes.push(Member::new("worker4", ip("192.168.10.44")));
    let report = ensure(&dir, &spec).unwrap();
    let want = pathset(&["kubelet-worker4".into(), "kubelet-worker4-serving".into()]);
    assert_eq!(set(&report.created), want);
    assert!(report.renewed.is_empty(), "{report}");
    let after = snapshot(&dir);
    assert_eq!(changed_files(&before, &after), want);
    let c = parsed(&dir, "kubelet-worker4-serving");
    assert_eq!(c.ips, vec![ip("192.168.10.44")]);
    assert!(signed_by(&c, &parsed(&dir, "ca")));
}

#[test]
fn control_plane_change_reissues_only_apiserver() {
    let (_tmp, dir, _) = setup();
    let before = snapshot(&dir);
    let old = parsed(&dir, "apiserver");
    let mut spec = spec3();
    spec.control_plane
        .push(Member::new("cp4", ip("192.168.10.40")));
    let report = ensure(&dir, &spec).unwrap();
    assert!(report.created.is_empty(), "{report}");
    assert_eq!(report.renewed.len(), 1, "{report}");
    assert_eq!(report.renewed[0].path, PathBuf::from("apiserver.crt"));
    assert!(
        report.renewed[0]
            .reason
            .contains("SANs lack cp4, 192.168.10.40")
    );
    let after = snapshot(&dir);
    assert_eq!(
        changed_files(&before, &after),
        set(&[PathBuf::from("apiserver.crt")])
    );
    let new = parsed(&dir, "apiserver");
    assert!(new.dns.contains(&"cp4".to_string()));
    assert!(new.ips.contains(&ip("192.168.10.40")));
    assert_eq!(new.public_key, old.public_key, "key is kept");
    assert_ne!(new.serial, old.serial);
    assert!(signed_by(&new, &parsed(&dir, "ca")));
    // And it is stable again.
    let again = ensure(&dir, &spec).unwrap();
    assert!(!again.changed(), "{again}");
}

#[test]
fn leaves_near_expiry_are_renewed_cas_are_not() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("pki");
    let now = OffsetDateTime::now_utc();
    ensure_at(&dir, &spec3(), now).unwrap();
    let before = snapshot(&dir);
    // 20 days left on every leaf.
    let later = now + Duration::days(345);
    let report = ensure_at(&dir, &spec3(), later).unwrap();
    assert!(report.created.is_empty(), "{report}");
    let leaves = spec3().leaves().unwrap();
    assert_eq!(report.renewed.len(), leaves.len(), "{report}");
    for r in &report.renewed {
        assert!(
            r.reason.contains("expires in 19 days") || r.reason.contains("expires in 20 days"),
            "{}",
            r.reason
        );
    }
    let changed = changed_files(&before, &snapshot(&dir));
    let want: BTreeSet<PathBuf> = leaves
        .iter()
        .map(|l| PathBuf::from(layout::cert_file(&l.stem)))
        .collect();
    assert_eq!(
        changed, want,
        "only leaf certificates change; CAs and keys stay"
    );
    let c = parsed(&dir, "admin");
    assert!(c.not_after > later + Duration::days(364));
    // Idempotent at that point in time too; and earlier than the window nothing happens.
    assert!(!ensure_at(&dir, &spec3(), later).unwrap().changed());
    assert!(
        !ensure_at(&dir, &spec3(), later + Duration::days(300))
            .unwrap()
            .changed()
    );
}

#[test]
fn list_reports_expiry() {
    let (_tmp, dir, _) = setup();
    let infos = list(&dir).unwrap();
    assert_eq!(infos.len(), expected_stems(&spec3()).len());
    let by: BTreeMap<&str, &CertInfo> = infos.iter().map(|i| (i.name.as_str(), i)).collect();
    let ca = by["ca"];
    assert!(ca.is_ca && ca.key_present);
    assert!((3649..=3650).contains(&ca.days_left));
    let srv = by["etcd/server-node1"];
    assert_eq!(srv.common_name, "node1");
    assert_eq!(srv.issuer_common_name, "etcd-ca");
    assert!((364..=365).contains(&srv.days_left));
    assert!(srv.sans.contains(&"::1".to_string()));
    let adm = by["admin"];
    assert_eq!(adm.organizations, vec!["system:masters".to_string()]);
    assert_eq!(adm.issuer_common_name, "kubernetes");
    // Serializable for `--json` output.
    let json = serde_json::to_value(&infos).unwrap();
    assert!(json[0]["not_after"].as_str().unwrap().contains('T'));
    fs::remove_file(dir.join("admin.key")).unwrap();
    assert!(
        !list(&dir)
            .unwrap()
            .iter()
            .any(|i| i.name == "admin" && i.key_present)
    );
}

#[test]
fn kubeconfig_renders_and_round_trips() {
    let (_tmp, dir, _) = setup();
    let yaml = kubeconfig_from_dir(
        &dir,
        layout::ADMIN,
        "bigdata",
        "https://192.168.10.1:6443",
        "kubernetes-admin",
    )
    .unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(v["apiVersion"].as_str(), Some("v1"));
    assert_eq!(v["kind"].as_str(), Some("Config"));
    assert_eq!(
        v["current-context"].as_str(),
        Some("kubernetes-admin@bigdata")
    );
    assert_eq!(
        v["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://192.168.10.1:6443")
    );
    let dec = |s: &serde_yaml::Value| {
        String::from_utf8(STANDARD.decode(s.as_str().unwrap()).unwrap()).unwrap()
    };
    let read = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(
        dec(&v["clusters"][0]["cluster"]["certificate-authority-data"]),
        read("ca.crt")
    );
    assert_eq!(
        dec(&v["users"][0]["user"]["client-certificate-data"]),
        read("admin.crt")
    );
    assert_eq!(
        dec(&v["users"][0]["user"]["client-key-data"]),
        read("admin.key")
    );
    assert_eq!(
        v["contexts"][0]["context"]["user"].as_str(),
        Some("kubernetes-admin")
    );

    let k: Kubeconfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(k.to_yaml().unwrap(), yaml);
    assert_eq!(
        k,
        Kubeconfig::new(
            "bigdata",
            "https://192.168.10.1:6443",
            &read("ca.crt"),
            "kubernetes-admin",
            &read("admin.crt"),
            &read("admin.key"),
        )
    );
    assert!(kubeconfig("c", "http://x:6443", "a", "u", "b", "c").is_err());
    assert!(kubeconfig_from_dir(&dir, "nope", "c", "https://x:6443", "u").is_err());
}

#[test]
fn missing_ca_key_is_fine_until_something_needs_signing() {
    let (_tmp, dir, _) = setup();
    fs::remove_file(dir.join("ca.key")).unwrap();
    let r = ensure(&dir, &spec3()).unwrap();
    assert!(!r.changed(), "{r}");
    let mut spec = spec3();
    spec.nodes.push(Member::new("worker4", ip("192.168.10.44")));
    let err = ensure(&dir, &spec).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("ca.key") && msg.contains("restore"), "{msg}");
    assert!(msg.contains("kubelet-worker4"), "{msg}");
}

#[test]
fn missing_ca_with_existing_leaves_is_an_error() {
    let (_tmp, dir, _) = setup();
    let before = snapshot(&dir);
    fs::remove_file(dir.join("etcd/ca.crt")).unwrap();
    fs::remove_file(dir.join("etcd/ca.key")).unwrap();
    let err = ensure(&dir, &spec3()).unwrap_err();
    assert!(matches!(err, PkiError::CaMissing { .. }), "{err}");
    assert!(err.to_string().contains("etcd/ca.crt"), "{err}");
    // Nothing was generated.
    assert!(!dir.join("etcd/ca.crt").exists());
    let after = snapshot(&dir);
    assert_eq!(after.len(), before.len() - 2);
}

#[test]
fn ca_cert_missing_but_key_present_and_no_leaves_reuses_key() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("pki");
    ensure(&dir, &spec3()).unwrap();
    let key_before = fs::read(dir.join("front-proxy-ca.key")).unwrap();
    fs::remove_file(dir.join("front-proxy-ca.crt")).unwrap();
    fs::remove_file(dir.join("front-proxy-client.crt")).unwrap();
    fs::remove_file(dir.join("front-proxy-client.key")).unwrap();
    let r = ensure(&dir, &spec3()).unwrap();
    assert_eq!(
        set(&r.created),
        set(&[
            PathBuf::from("front-proxy-ca.crt"),
            PathBuf::from("front-proxy-client.crt"),
            PathBuf::from("front-proxy-client.key"),
        ])
    );
    assert_eq!(
        fs::read(dir.join("front-proxy-ca.key")).unwrap(),
        key_before
    );
}

#[test]
fn leaf_key_loss_and_loose_permissions_are_repaired() {
    let (_tmp, dir, _) = setup();
    fs::remove_file(dir.join("scheduler.key")).unwrap();
    fs::set_permissions(dir.join("admin.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = ensure(&dir, &spec3()).unwrap();
    assert_eq!(r.created, vec![PathBuf::from("scheduler.key")]);
    assert_eq!(r.renewed.len(), 1);
    assert_eq!(r.renewed[0].path, PathBuf::from("scheduler.crt"));
    assert!(r.renewed[0].reason.contains("private key is missing"));
    assert_eq!(r.permissions_fixed, vec![PathBuf::from("admin.key")]);
    let mode = fs::metadata(dir.join("admin.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let c = parsed(&dir, "scheduler");
    let key = load_key(
        Path::new("scheduler.key"),
        &fs::read_to_string(dir.join("scheduler.key")).unwrap(),
    )
    .unwrap();
    assert_eq!(public_key_bits(&key), c.public_key.as_slice());
    assert!(!ensure(&dir, &spec3()).unwrap().changed());
}

#[test]
fn foreign_leaf_is_reissued_from_current_ca() {
    let (_tmp, dir, _) = setup();
    // The right subject, signed by another cluster's CA.
    let other = TempDir::new().unwrap();
    let odir = other.path().join("pki");
    ensure(&odir, &spec3()).unwrap();
    fs::copy(odir.join("kube-proxy.crt"), dir.join("kube-proxy.crt")).unwrap();
    fs::copy(odir.join("kube-proxy.key"), dir.join("kube-proxy.key")).unwrap();
    let r = ensure(&dir, &spec3()).unwrap();
    assert_eq!(r.renewed.len(), 1, "{r}");
    assert!(
        r.renewed[0].reason.contains("not signed by the current ca"),
        "{r}"
    );
    assert!(signed_by(&parsed(&dir, "kube-proxy"), &parsed(&dir, "ca")));
}

#[test]
fn sa_key_pair_rules() {
    let (_tmp, dir, _) = setup();
    let key = fs::read_to_string(dir.join("sa.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let public = fs::read_to_string(dir.join("sa.pub")).unwrap();
    assert!(public.contains("BEGIN PUBLIC KEY"));
    // sa.pub is re-derived from sa.key.
    fs::remove_file(dir.join("sa.pub")).unwrap();
    let r = ensure(&dir, &spec3()).unwrap();
    assert_eq!(r.created, vec![PathBuf::from("sa.pub")]);
    assert_eq!(fs::read_to_string(dir.join("sa.pub")).unwrap(), public);
    // Losing sa.key while sa.pub exists is an error, not a silent regeneration.
    fs::remove_file(dir.join("sa.key")).unwrap();
    let err = ensure(&dir, &spec3()).unwrap_err();
    assert!(matches!(err, PkiError::SaKeyMissing { .. }), "{err}");
    assert!(err.to_string().contains("delete"), "{err}");
}

#[test]
fn garbage_files_are_reported_with_their_path() {
    let (_tmp, dir, _) = setup();
    fs::write(dir.join("admin.crt"), "not a cert").unwrap();
    let err = ensure(&dir, &spec3()).unwrap_err();
    assert!(matches!(err, PkiError::ParseCert { .. }), "{err}");
    assert!(err.to_string().contains("admin.crt"), "{err}");
    fs::remove_file(dir.join("admin.crt")).unwrap();
    fs::write(dir.join("admin.key"), "junk").unwrap();
    let err = ensure(&dir, &spec3()).unwrap_err();
    assert!(matches!(err, PkiError::ParseKey { .. }), "{err}");
}

#[test]
fn invalid_specs_are_rejected() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("pki");
    let mut s = spec3();
    s.nodes.push(Member::new("../evil", ip("10.0.0.9")));
    assert!(matches!(ensure(&dir, &s), Err(PkiError::InvalidSpec(_))));
    let mut s = spec3();
    s.etcd.push(s.etcd[0].clone());
    assert!(matches!(ensure(&dir, &s), Err(PkiError::InvalidSpec(_))));
    let mut s = spec3();
    s.control_plane.clear();
    assert!(matches!(ensure(&dir, &s), Err(PkiError::InvalidSpec(_))));
    assert!(!dir.exists(), "nothing written for an invalid spec");
}

#[test]
fn extra_sans_and_ipv6_service_cidr() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("pki");
    let mut s = spec3();
    s.service_cidr = "fd00:10:96::/112".parse().unwrap();
    s.apiserver_extra_sans = vec!["k8s.example.org".into(), "192.168.10.100".into()];
    ensure(&dir, &s).unwrap();
    let c = parsed(&dir, "apiserver");
    assert!(c.ips.contains(&ip("fd00:10:96::1")));
    assert!(c.ips.contains(&ip("192.168.10.100")));
    assert!(c.dns.contains(&"k8s.example.org".to_string()));
}

#[test]
fn rbac_manifest_binds_the_kubelet_client_group() {
    let v: serde_yaml::Value = serde_yaml::from_str(APISERVER_KUBELET_CLIENT_RBAC).unwrap();
    assert_eq!(v["kind"].as_str(), Some("ClusterRoleBinding"));
    assert_eq!(
        v["roleRef"]["name"].as_str(),
        Some("system:kubelet-api-admin")
    );
    assert_eq!(
        v["subjects"][0]["name"].as_str(),
        Some(APISERVER_KUBELET_CLIENT_GROUP)
    );
}
#[test]
fn error_is_send_sync_for_anyhow() {
    fn check<T: std::error::Error + Send + Sync + 'static>() {}
    check::<PkiError>();
    let e: anyhow::Error = PkiError::InvalidSpec("x".into()).into();
    assert!(e.to_string().contains("invalid PKI spec"));
}

#[test]
fn spec_from_inventory() {
    use crate::inventory::{Host, Inventory, Network, Overlay, Role, SshEndpoint, SshSettings};
    let host = |name: &str, addr: &str, roles: &[Role]| Host {
        name: name.into(),
        ssh: SshEndpoint {
            address: ip(addr),
            port: 22,
            user: "root".into(),
            identity_file: None,
        },
        sudo: false,
        roles: roles.iter().copied().collect(),
        kubelet_extra: Default::default(),
        containerd_extra: Default::default(),
        overlay_backend: None,
    };
    let inv = Inventory {
        path: "inv.yaml".into(),
        cluster_name: "bigdata".into(),
        control_plane_endpoint: None,
        audit: Default::default(),
        artifacts: None,
        ssh: SshSettings {
            known_hosts: None,
            bastion: None,
            connect_timeout_secs: 10,
        },
        network: Network {
            pod_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            node_prefix: 24,
            overlay: Overlay {
                vni: 1,
                port: 4789,
                mtu: None,
                backend: crate::inventory::Backend::Auto,
                encrypt: false,
            },
        },
        hosts: vec![
            host("cp1", "10.0.0.1", &[Role::ControlPlane, Role::Etcd]),
            host("e2", "10.0.0.2", &[Role::Etcd]),
            host("w1", "10.0.0.3", &[Role::Worker]),
        ],
        warnings: Vec::new(),
    };
    let s = PkiSpec::from_inventory(&inv);
    let names = |m: &[Member]| m.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&s.control_plane), ["cp1"]);
    assert_eq!(names(&s.etcd), ["cp1", "e2"]);
    assert_eq!(names(&s.nodes), ["cp1", "w1"]);
    assert_eq!(s.cluster_domain, "cluster.local");
    s.validate().unwrap();
}

#[test]
fn renew_reissues_the_named_or_every_leaf_from_the_same_cas() {
    let (_tmp, dir, _) = setup();
    let before = snapshot(&dir);
    let leaves = spec3().leaves().unwrap();

    // Nothing due: Renew::Due changes nothing.
    assert!(!renew(&dir, &spec3(), &Renew::Due).unwrap().changed());

    // One named leaf: only its certificate changes.
    let one: BTreeSet<String> = ["etcd/server-node2".to_string()].into_iter().collect();
    let old = parsed(&dir, "etcd/server-node2");
    let report = renew(&dir, &spec3(), &Renew::Named(one)).unwrap();
    assert_eq!(report.renewed.len(), 1, "{report}");
    assert!(report.renewed[0].reason.contains("renewal requested"));
    let mid = snapshot(&dir);
    assert_eq!(
        changed_files(&before, &mid),
        [PathBuf::from("etcd/server-node2.crt")]
            .into_iter()
            .collect()
    );
    let new = parsed(&dir, "etcd/server-node2");
    assert_ne!(new.serial, old.serial);
    assert!(signed_by(&new, &parsed(&dir, "etcd/ca")));

    // All: every leaf certificate, no CA, no key.
    let report = renew(&dir, &spec3(), &Renew::All).unwrap();
    assert_eq!(report.renewed.len(), leaves.len(), "{report}");
    let want: BTreeSet<PathBuf> = leaves
        .iter()
        .map(|l| PathBuf::from(layout::cert_file(&l.stem)))
        .collect();
    assert_eq!(changed_files(&mid, &snapshot(&dir)), want);

    // A CA or an unknown name is refused before anything is written.
    let at = snapshot(&dir);
    for bad in ["ca", "etcd/ca", "kubelet-node9"] {
        let names: BTreeSet<String> = [bad.to_string()].into_iter().collect();
        let err = renew(&dir, &spec3(), &Renew::Named(names))
            .unwrap_err()
            .to_string();
        assert!(err.contains(bad) && err.contains("no such leaf"), "{err}");
    }
    assert!(changed_files(&at, &snapshot(&dir)).is_empty());
}
