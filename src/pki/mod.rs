//! Cluster PKI: CAs, leaf certificates and the service-account key pair,
//! created with rcgen in a kubeadm-like layout, plus kubeconfig rendering.
//!
//! # Layout (all PEM; keys PKCS#8 ECDSA P-256, mode 0600; certs 0644; dirs 0700)
//!
//! | stem | signed by | subject / SANs | usage |
//! |---|---|---|---|
//! | `ca` | self (10 y) | CN kubernetes, O <cluster> | cluster CA |
//! | `etcd/ca` | self (10 y) | CN etcd-ca | etcd CA |
//! | `front-proxy-ca` | self (10 y) | CN front-proxy-ca | aggregation CA |
//! | `apiserver` | ca | CN kube-apiserver; SANs: first service IP, every control-plane name and address, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.<domain>`, `localhost`, 127.0.0.1, extra SANs | serverAuth |
//! | `apiserver-kubelet-client` | ca | CN kube-apiserver-kubelet-client, O [`APISERVER_KUBELET_CLIENT_GROUP`] | clientAuth |
//! | `apiserver-etcd-client` | etcd/ca | CN kube-apiserver-etcd-client | clientAuth |
//! | `front-proxy-client` | front-proxy-ca | CN front-proxy-client | clientAuth |
//! | `etcd/healthcheck-client` | etcd/ca | CN kube-etcd-healthcheck-client | clientAuth |
//! | `etcd/server-<name>`, `etcd/peer-<name>` | etcd/ca | CN <name>; SANs name, address, localhost, 127.0.0.1, ::1 | serverAuth+clientAuth |
//! | `admin` | ca | CN kubernetes-admin, O system:masters | clientAuth |
//! | `controller-manager` | ca | CN system:kube-controller-manager | clientAuth |
//! | `scheduler` | ca | CN system:kube-scheduler | clientAuth |
//! | `kube-proxy` | ca | CN system:kube-proxy, O system:node-proxier | clientAuth |
//! | `kubelet-<name>` | ca | CN system:node:<name>, O system:nodes | clientAuth |
//! | `kubelet-<name>-serving` | ca | CN system:node:<name>, O system:nodes; SANs name, address | serverAuth |
//! | `sa.key` / `sa.pub` | – | ECDSA P-256 (ES256) service-account signing key pair | |
//!
//! Leaves are valid 1 year (never past their CA), CAs 10 years.
//!
//! # Idempotency
//! [`ensure`] only writes what is missing or wrong: a re-run with the same
//! spec writes nothing. A leaf is re-issued (keeping its key) from the
//! existing CA when its subject, SANs (the spec's SANs must be a subset of the
//! certificate's) or usages no longer match, when it is not signed by the
//! current CA, or when it expires within 30 days. CAs are never regenerated.
//! A CA certificate without its key is accepted (external-CA mode) as long as
//! nothing needs signing.
//!
//! # apiserver → kubelet authorization
//! `apiserver-kubelet-client` is *not* in `system:masters`; its group
//! [`APISERVER_KUBELET_CLIENT_GROUP`] must be bound to the built-in ClusterRole
//! `system:kubelet-api-admin` by applying [`APISERVER_KUBELET_CLIENT_RBAC`]
//! (with the admin kubeconfig) once the apiserver is up, otherwise
//! `kubectl logs/exec/port-forward` are refused by kubelets that use webhook
//! authorization.

pub mod encryption;
mod error;
mod fsio;
mod inspect;
mod issue;
mod kubeconfig;
mod spec;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

pub use error::PkiError;
pub use inspect::CertInfo;
pub use issue::{CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS};
pub use kubeconfig::{
    ClusterEntry, ContextEntry, Kubeconfig, NamedCluster, NamedContext, NamedUser, UserEntry,
    kubeconfig, kubeconfig_from_dir,
};
pub use spec::{
    APISERVER_KUBELET_CLIENT_GROUP, Member, PkiSpec, endpoint_sans, first_service_ip, layout,
};

use error::Result;
use fsio::{CERT_MODE, KEY_MODE, ensure_private_dir, exists, read_opt, tighten_key, write_atomic};
use inspect::{ParsedCert, parse_cert_pem, signed_by};
use issue::{
    CaIssuer, existing_ca, issue_leaf, leaf_not_after, load_key, new_key, public_key_bits,
};
use spec::{ALL_CAS, CaId, LeafPlan};

/// ClusterRoleBinding granting [`APISERVER_KUBELET_CLIENT_GROUP`] the built-in
/// ClusterRole `system:kubelet-api-admin` (full kubelet API access, nothing
/// else). Apply it once the apiserver is up.
pub const APISERVER_KUBELET_CLIENT_RBAC: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: director-boot:apiserver-kubelet-api-admin
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: director-boot:apiserver-kubelet-clients
";

/// A file that was re-written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewed {
    pub path: PathBuf,
    pub reason: String,
}

/// What [`ensure`] did. Paths are relative to the PKI directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Files that did not exist and were written.
    pub created: Vec<PathBuf>,
    /// Files left untouched.
    pub kept: Vec<PathBuf>,
    /// Existing files that were re-written (re-issued certificates).
    pub renewed: Vec<Renewed>,
    /// Keys/directories whose permissions were too open and were tightened.
    pub permissions_fixed: Vec<PathBuf>,
    /// Things that need a human (e.g. a CA nearing its end of life).
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether anything on disk was changed.
    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.renewed.is_empty() && self.permissions_fixed.is_empty())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "PKI: {} created, {} renewed, {} kept",
            self.created.len(),
            self.renewed.len(),
            self.kept.len()
        )?;
        for p in &self.created {
            writeln!(f, "  created  {}", p.display())?;
        }
        for r in &self.renewed {
            writeln!(f, "  renewed  {} ({})", r.path.display(), r.reason)?;
        }
        for p in &self.permissions_fixed {
            writeln!(f, "  chmod    {}", p.display())?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning  {w}")?;
        }
        Ok(())
    }
}

/// Create whatever `spec` needs under `dir` (mode 0700) and is missing or no
/// longer right; never rewrite a valid existing certificate or key.
pub fn ensure(dir: &Path, spec: &PkiSpec) -> std::result::Result<Report, PkiError> {
    ensure_at(dir, spec, OffsetDateTime::now_utc())
}

/// Which leaves [`renew`] re-issues besides what [`ensure`] would anyway (missing, wrong,
/// expiring within [`RENEW_BEFORE_DAYS`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Renew {
    /// Only what is due: [`ensure`]'s rules.
    #[default]
    Due,
    /// Every leaf of the spec.
    All,
    /// These leaves (stems as [`list`] names them, e.g. `apiserver`, `etcd/server-node1`).
    Named(BTreeSet<String>),
}

impl Renew {
    fn forces(&self, stem: &str) -> bool {
        match self {
            Renew::Due => false,
            Renew::All => true,
            Renew::Named(names) => names.contains(stem),
        }
    }
}

/// The stems of every leaf certificate `spec` has (what [`Renew::Named`] may name).
pub fn leaf_names(spec: &PkiSpec) -> std::result::Result<Vec<String>, PkiError> {
    Ok(spec.leaves()?.into_iter().map(|l| l.stem).collect())
}

/// [`ensure`], re-issuing `which` leaves from the existing CAs (keys kept) even when they are
/// fine. CAs are never touched. A name that is not a leaf of `spec` is an error, before
/// anything is written.
pub fn renew(dir: &Path, spec: &PkiSpec, which: &Renew) -> std::result::Result<Report, PkiError> {
    if let Renew::Named(names) = which {
        let known = leaf_names(spec)?;
        if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
            return Err(PkiError::UnknownLeaf {
                name: bad.clone(),
                known: known.join(", "),
            });
        }
    }
    ensure_with(dir, spec, OffsetDateTime::now_utc(), which)
}

/// Every `*.crt` under `dir` (recursively), sorted by name.
pub fn list(dir: &Path) -> std::result::Result<Vec<CertInfo>, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut files = Vec::new();
    collect_certs(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Some(pem) = read_opt(&path)? else {
            continue;
        };
        let parsed = parse_cert_pem(&path, &pem)?;
        let rel = path.strip_prefix(dir).unwrap_or(&path).with_extension("");
        let name = rel.to_string_lossy().into_owned();
        let key_present = exists(&path.with_extension("key"))?;
        out.push(CertInfo::new(name, path, parsed, now, key_present));
    }
    Ok(out)
}

fn collect_certs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| PkiError::Io {
        action: "list directory",
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| PkiError::Io {
            action: "list directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type().map_err(|source| PkiError::Io {
            action: "stat",
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            collect_certs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            out.push(path);
        }
    }
    Ok(())
}

struct CaState {
    id: CaId,
    cert_path: PathBuf,
    key_path: PathBuf,
    parsed: ParsedCert,
    issuer: Option<CaIssuer>,
}

impl CaState {
    /// The issuer, or the error explaining that the CA key is needed for `needed`.
    fn issuer(&self, dir: &Path, needed: &Path) -> Result<&CaIssuer> {
        self.issuer.as_ref().ok_or_else(|| PkiError::CaKeyMissing {
            cert: self.cert_path.clone(),
            key: self.key_path.clone(),
            needed: dir.join(needed),
        })
    }
}

struct Run<'a> {
    dir: &'a Path,
    now: OffsetDateTime,
    report: Report,
    renew: &'a Renew,
}

impl Run<'_> {
    fn rel(&self, p: &Path) -> PathBuf {
        p.strip_prefix(self.dir).unwrap_or(p).to_path_buf()
    }
    fn created(&mut self, p: &Path) {
        let r = self.rel(p);
        self.report.created.push(r);
    }
    fn kept(&mut self, p: &Path) {
        let r = self.rel(p);
        self.report.kept.push(r);
    }
    fn renewed(&mut self, p: &Path, reason: String) {
        let path = self.rel(p);
        self.report.renewed.push(Renewed { path, reason });
    }
    fn keep_key(&mut self, p: &Path) -> Result<()> {
        if let Some(fixed) = tighten_key(p)? {
            let r = self.rel(&fixed);
            self.report.permissions_fixed.push(r);
        }
        self.kept(p);
        Ok(())
    }
    fn paths(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(layout::cert_file(stem)),
            self.dir.join(layout::key_file(stem)),
        )
    }
}

pub(crate) fn ensure_at(dir: &Path, spec: &PkiSpec, now: OffsetDateTime) -> Result<Report> {
    ensure_with(dir, spec, now, &Renew::Due)
}

pub(crate) fn ensure_with(
    dir: &Path,
    spec: &PkiSpec,
    now: OffsetDateTime,
    renew: &Renew,
) -> Result<Report> {
    spec.validate()?;
    let leaves = spec.leaves()?;
    let mut run = Run {
        dir,
        now,
        report: Report::default(),
        renew,
    };
    for d in [dir.to_path_buf(), dir.join("etcd")] {
        if let Some(fixed) = ensure_private_dir(&d)? {
            let r = run.rel(&fixed);
            run.report.permissions_fixed.push(r);
        }
    }
    let mut cas = BTreeMap::new();
    for id in ALL_CAS {
        let state = ensure_ca(&mut run, id, spec, &leaves)?;
        cas.insert(id, state);
    }
    for leaf in &leaves {
        let Some(ca) = cas.get(&leaf.ca) else {
            continue; // every CaId is in ALL_CAS
        };
        ensure_leaf(&mut run, leaf, ca)?;
    }
    ensure_sa(&mut run)?;
    Ok(run.report)
}

fn ensure_ca(run: &mut Run<'_>, id: CaId, spec: &PkiSpec, leaves: &[LeafPlan]) -> Result<CaState> {
    let (cert_path, key_path) = run.paths(id.stem());
    let cert_pem = read_opt(&cert_path)?;
    let key_pem = read_opt(&key_path)?;
    let key = match key_pem {
        Some(k) => Some(load_key(&key_path, &k)?),
        None => None,
    };

    let (parsed, issuer) = match cert_pem {
        Some(pem) => {
            let parsed = parse_cert_pem(&cert_path, &pem)?;
            if !parsed.is_ca {
                return Err(PkiError::CaInvalid {
                    cert: cert_path,
                    reason: "basicConstraints does not say CA".into(),
                });
            }
            let issuer = match key {
                Some(key) => {
                    if public_key_bits(&key) != parsed.public_key.as_slice() {
                        return Err(PkiError::CaInvalid {
                            cert: cert_path,
                            reason: format!("{} does not belong to it", key_path.display()),
                        });
                    }
                    run.keep_key(&key_path)?;
                    Some(existing_ca(&cert_path, &parsed.der, key)?)
                }
                None => None,
            };
            run.kept(&cert_path);
            let left = parsed.not_after - run.now;
            if left < Duration::days(LEAF_VALIDITY_DAYS) {
                run.report.warnings.push(format!(
                    "CA {} expires in {} days (leaves it signs are cut short); plan a CA rotation",
                    run.rel(&cert_path).display(),
                    left.whole_days()
                ));
            }
            (parsed, issuer)
        }
        None => {
            // A new CA would orphan anything it was supposed to have signed.
            for leaf in leaves.iter().filter(|l| l.ca == id) {
                let leaf_cert = run.dir.join(layout::cert_file(&leaf.stem));
                if exists(&leaf_cert)? {
                    return Err(PkiError::CaMissing {
                        cert: cert_path,
                        leaf: leaf_cert,
                    });
                }
            }
            let key = match key {
                Some(k) => {
                    run.keep_key(&key_path)?;
                    k
                }
                None => {
                    let k = new_key(id.stem())?;
                    write_atomic(&key_path, k.serialize_pem().as_bytes(), KEY_MODE)?;
                    run.created(&key_path);
                    k
                }
            };
            let (pem, issuer) = issue::self_signed_ca(id, &spec.cluster_name, key, run.now)?;
            write_atomic(&cert_path, pem.as_bytes(), CERT_MODE)?;
            run.created(&cert_path);
            (parse_cert_pem(&cert_path, &pem)?, Some(issuer))
        }
    };
    Ok(CaState {
        id,
        cert_path,
        key_path,
        parsed,
        issuer,
    })
}

/// Why an existing leaf must be re-issued (empty: it is fine).
fn leaf_problems(
    run: &mut Run<'_>,
    plan: &LeafPlan,
    cert: &ParsedCert,
    key: Option<&KeyPair>,
    ca: &CaState,
) -> Vec<String> {
    let mut why = Vec::new();
    if run.renew.forces(&plan.stem) {
        why.push("renewal requested".to_string());
    }
    match key {
        None => why.push("its private key is missing".to_string()),
        Some(k) if public_key_bits(k) != cert.public_key.as_slice() => {
            why.push("it does not match its private key".to_string())
        }
        Some(_) => {}
    }
    if !signed_by(cert, &ca.parsed) {
        why.push(format!("it is not signed by the current {}", ca.id.stem()));
    }
    let want_orgs: BTreeSet<&str> = plan.orgs.iter().map(String::as_str).collect();
    let have_orgs: BTreeSet<&str> = cert.subject_o.iter().map(String::as_str).collect();
    if cert.subject_cn != [plan.cn.as_str()] || want_orgs != have_orgs {
        why.push(format!(
            "subject is {:?}, want CN={} O={:?}",
            cert.subject, plan.cn, plan.orgs
        ));
    }
    let mut missing: Vec<String> = plan
        .dns
        .iter()
        .filter(|d| !cert.dns.contains(&d.to_ascii_lowercase()))
        .cloned()
        .collect();
    missing.extend(
        plan.ips
            .iter()
            .filter(|ip| !cert.ips.contains(ip))
            .map(|ip| ip.to_string()),
    );
    if !missing.is_empty() {
        why.push(format!("SANs lack {}", missing.join(", ")));
    }
    if plan.server_auth && !cert.server_auth {
        why.push("extended key usage lacks serverAuth".into());
    }
    if plan.client_auth && !cert.client_auth {
        why.push("extended key usage lacks clientAuth".into());
    }
    let left = cert.not_after - run.now;
    if left < Duration::days(RENEW_BEFORE_DAYS) {
        // Only worth it if a new certificate would actually live longer
        // (it cannot outlive its CA).
        if leaf_not_after(run.now, ca.parsed.not_after) > cert.not_after + Duration::days(1) {
            if left.is_negative() {
                why.push(format!("it expired {} days ago", -left.whole_days()));
            } else {
                why.push(format!(
                    "it expires in {} days (renewal window {RENEW_BEFORE_DAYS} days)",
                    left.whole_days()
                ));
            }
        } else {
            run.report.warnings.push(format!(
                "{}.crt expires in {} days and cannot be renewed past its CA {}",
                plan.stem,
                left.whole_days(),
                ca.id.stem()
            ));
        }
    }
    why
}

fn ensure_leaf(run: &mut Run<'_>, plan: &LeafPlan, ca: &CaState) -> Result<()> {
    let (cert_path, key_path) = run.paths(&plan.stem);
    let cert_pem = read_opt(&cert_path)?;
    let key = match read_opt(&key_path)? {
        Some(k) => Some(load_key(&key_path, &k)?),
        None => None,
    };

    let reason = match &cert_pem {
        None => None,
        Some(pem) => {
            let parsed = parse_cert_pem(&cert_path, pem)?;
            let why = leaf_problems(run, plan, &parsed, key.as_ref(), ca);
            if why.is_empty() {
                run.keep_key(&key_path)?;
                run.kept(&cert_path);
                return Ok(());
            }
            Some(why.join("; "))
        }
    };

    let issuer = ca.issuer(run.dir, &run.rel(&cert_path))?;
    let key = match key {
        // Keep an existing key: re-issuing only replaces the certificate.
        Some(k) => {
            run.keep_key(&key_path)?;
            k
        }
        None => {
            let k = new_key(&plan.stem)?;
            write_atomic(&key_path, k.serialize_pem().as_bytes(), KEY_MODE)?;
            run.created(&key_path);
            k
        }
    };
    let pem = issue_leaf(plan, &key, issuer, ca.parsed.not_after, run.now)?;
    write_atomic(&cert_path, pem.as_bytes(), CERT_MODE)?;
    match reason {
        None => run.created(&cert_path),
        Some(reason) => run.renewed(&cert_path, reason),
    }
    Ok(())
}

fn same_pem(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<String>();
    norm(a) == norm(b)
}

fn ensure_sa(run: &mut Run<'_>) -> Result<()> {
    let key_path = run.dir.join(layout::SA_KEY_FILE);
    let pub_path = run.dir.join(layout::SA_PUB_FILE);
    let pub_pem = read_opt(&pub_path)?;
    let key = match read_opt(&key_path)? {
        Some(k) => {
            let key = load_key(&key_path, &k)?;
            run.keep_key(&key_path)?;
            key
        }
        None if pub_pem.is_some() => {
            return Err(PkiError::SaKeyMissing {
                key: key_path,
                public: pub_path,
            });
        }
        None => {
            let key = new_key("service-account signing")?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
            run.created(&key_path);
            key
        }
    };
    let want = key.public_key_pem();
    match pub_pem {
        Some(p) if same_pem(&p, &want) => run.kept(&pub_path),
        Some(_) => {
            write_atomic(&pub_path, want.as_bytes(), CERT_MODE)?;
            run.renewed(&pub_path, "it did not match sa.key".into());
        }
        None => {
            write_atomic(&pub_path, want.as_bytes(), CERT_MODE)?;
            run.created(&pub_path);
        }
    }
    Ok(())
}
