//! Component roles: the data that says what a component puts on a node.
//!
//! A role file (`roles/<component>/role.yaml`, its templates beside it) names the phase that
//! applies it, the inventory roles whose hosts get it, the host packages and the binaries from
//! the artifact mirror it needs, the PKI files and kubeconfigs it copies, the templates it
//! renders, the systemd units it runs, and the health checks that say it works. Adding a
//! component is adding a directory under `roles/`.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::inventory::HostRole;
use crate::osfamily::OsFamily;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComponentRole {
    pub name: String,
    /// The phase that applies this role (etcd, control-plane, runtime, kubelet, overlay, ...).
    pub phase: String,
    /// Hosts with any of these inventory roles get this role.
    pub hosts: BTreeSet<HostRole>,
    #[serde(default)]
    pub description: String,
    /// Packages from the host's OS package manager, installed only when missing (see
    /// `osfamily.rs` for how each family checks and installs them).
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Names from the artifact manifest, installed into /usr/local/bin (or the `dest` directory).
    #[serde(default)]
    pub binaries: Vec<BinaryRef>,
    /// Files copied from the cluster's PKI dir (paths are templates: `kubelet-{{ node.name }}.crt`).
    #[serde(default)]
    pub pki: Vec<PkiFile>,
    /// Kubeconfigs generated from the PKI.
    #[serde(default)]
    pub kubeconfigs: Vec<KubeconfigFile>,
    /// Templates rendered with the cluster and node context.
    #[serde(default)]
    pub files: Vec<TemplateFile>,
    /// Directories that must exist.
    #[serde(default)]
    pub dirs: Vec<DirSpec>,
    /// A tera condition over `cluster` and `node` (e.g. `node.firewalld`); the role applies to
    /// a host only when it holds. Omitted: always.
    #[serde(default)]
    pub when: Option<String>,
    /// Idempotent root commands (templates) run after this role changed anything on a host, before
    /// its units restart (`sysctl --system`, `firewall-cmd --reload`, ...).
    #[serde(default)]
    pub on_change: Vec<String>,
    /// systemd units enabled and running; restarted when anything above changed.
    #[serde(default)]
    pub units: Vec<String>,
    /// Kubernetes manifests (templates) applied with kubectl from the first control-plane host.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Checks run after the units are up, each retried until its timeout.
    #[serde(default)]
    pub health: Vec<HealthCheck>,
    /// Paths `reset` removes besides the files above (data dirs, CNI state).
    #[serde(default)]
    pub reset_paths: Vec<String>,
    /// Idempotent root commands (templates) `reset` runs after stopping this role's units and
    /// before removing its files: undo what is not a file (network devices, iptables chains,
    /// firewalld settings). Each must succeed when there is nothing left to undo.
    #[serde(default)]
    pub reset_commands: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BinaryRef {
    /// Artifact name in the mirror's manifest.
    pub name: String,
    /// Directory on the node (default /usr/local/bin).
    #[serde(default)]
    pub dest: Option<String>,
    /// File name on the node when it differs from the artifact name (`cni-bridge` → `bridge`).
    #[serde(default)]
    pub file: Option<String>,
}

impl BinaryRef {
    /// Where the binary goes on the node: `dest` is a directory (default /usr/local/bin).
    pub fn path(&self) -> String {
        let dir = self.dest.as_deref().unwrap_or("/usr/local/bin");
        let file = self.file.as_deref().unwrap_or(&self.name);
        format!("{}/{}", dir.trim_end_matches('/'), file)
    }
}

/// A host package: `haproxy`, or a mapping when the families name it differently or when its
/// presence is better told by a command on PATH.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Package {
    Name(String),
    Spec(PackageSpec),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    pub name: String,
    /// What to ask dnf for on RHEL-family hosts, when not `name` (a path such as
    /// `/usr/sbin/iptables` lets dnf find the package that provides it).
    #[serde(default)]
    pub rhel: Option<String>,
    /// What to ask apt for on Debian-family hosts, when not `name`.
    #[serde(default)]
    pub debian: Option<String>,
    /// A command whose presence on PATH means nothing is to be installed, instead of asking the
    /// package database. Lets one package come only together with another (`conntrack` only
    /// when `iptables` is missing).
    #[serde(default)]
    pub present_if: Option<String>,
}

impl Package {
    pub fn name(&self) -> &str {
        match self {
            Package::Name(n) => n,
            Package::Spec(s) => &s.name,
        }
    }

    /// The name this family's package manager knows.
    pub fn for_family(&self, family: OsFamily) -> &str {
        match (self, family) {
            (Package::Spec(s), OsFamily::Rhel) => s.rhel.as_deref().unwrap_or(&s.name),
            (Package::Spec(s), OsFamily::Debian) => s.debian.as_deref().unwrap_or(&s.name),
            (Package::Name(n), _) => n,
        }
    }

    /// A read-only shell test that succeeds when the package need not be installed.
    pub fn present_test(&self, family: OsFamily) -> String {
        match self {
            Package::Spec(PackageSpec {
                present_if: Some(cmd),
                ..
            }) => format!(
                "command -v {} >/dev/null 2>&1",
                crate::osfamily::shell_word(cmd)
            ),
            _ => family.package_installed(self.for_family(family)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PkiFile {
    pub src: String,
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigFile {
    /// Client certificate base name in the PKI dir (`admin`, `scheduler`, `kubelet-{{ node.name }}`).
    pub cert: String,
    /// Which API server address: `local` (this host's own API server, https://127.0.0.1:6443),
    /// `internal` (control-plane components: the node-local load balancer in an HA cluster,
    /// else `local`) or `cluster` (nodes: the load balancer, else the only control plane).
    #[serde(default = "default_server")]
    pub server: String,
    pub dest: String,
}

fn default_server() -> String {
    "cluster".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// Path under `templates/`.
    pub template: String,
    pub dest: String,
    /// Octal mode as a string ("0644"); default "0600".
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Deep-merge this inventory setting into the rendered YAML/TOML.
    #[serde(default)]
    pub merge: Option<MergeExtra>,
}

/// Inventory settings a rendered file can take over.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MergeExtra {
    KubeletExtra,
    ContainerdExtra,
}

/// Root-only unless a role says otherwise (CIS 1.1.x, 4.1.x: component units and configs
/// 600 root:root); every reader of these files runs as root.
fn default_mode() -> String {
    "0600".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    pub path: String,
    #[serde(default = "default_dir_mode")]
    pub mode: String,
}

fn default_dir_mode() -> String {
    "0755".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub name: String,
    /// Shell command (a template, like `on_change`) run as root on the node; healthy when it
    /// exits 0.
    pub command: String,
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
}

fn default_health_timeout() -> u64 {
    60
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("roles/{file}")]
    Parse {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("roles/{file}: mode {mode:?} of {path} is not an octal mode like \"0644\"")]
    Mode {
        file: String,
        path: String,
        mode: String,
    },
}

impl ComponentRole {
    pub fn parse(file: &str, text: &str) -> Result<ComponentRole, RoleError> {
        let role: ComponentRole =
            serde_yaml::from_str(text).map_err(|source| RoleError::Parse {
                file: file.to_string(),
                source,
            })?;
        for f in &role.files {
            parse_mode(&f.mode).ok_or_else(|| RoleError::Mode {
                file: file.to_string(),
                path: f.dest.clone(),
                mode: f.mode.clone(),
            })?;
        }
        for d in &role.dirs {
            parse_mode(&d.mode).ok_or_else(|| RoleError::Mode {
                file: file.to_string(),
                path: d.path.clone(),
                mode: d.mode.clone(),
            })?;
        }
        Ok(role)
    }

    pub fn applies_to(&self, roles: &BTreeSet<HostRole>) -> bool {
        self.hosts.iter().any(|r| roles.contains(r))
    }
}

/// "0644" → 0o644.
pub fn parse_mode(mode: &str) -> Option<u32> {
    u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_role() {
        let r = ComponentRole::parse(
            "etcd.yaml",
            "name: etcd\nphase: etcd\nhosts: [etcd]\nbinaries: [{name: etcd}]\nfiles:\n  - {template: etcd/etcd.service, dest: /etc/systemd/system/etcd.service}\nunits: [etcd]\n",
        )
        .unwrap();
        assert_eq!(r.files[0].mode, "0600");
        assert!(r.applies_to(&[HostRole::Etcd].into_iter().collect()));
        assert!(!r.applies_to(&[HostRole::Worker].into_iter().collect()));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_modes() {
        let e = ComponentRole::parse("x.yaml", "name: x\nphase: p\nhosts: [worker]\nbogus: 1\n")
            .unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert!(chain.contains("unknown field `bogus`"), "{chain}");
        let e = ComponentRole::parse(
            "x.yaml",
            "name: x\nphase: p\nhosts: [worker]\nfiles: [{template: a, dest: /a, mode: \"0999\"}]\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "roles/x.yaml: mode \"0999\" of /a is not an octal mode like \"0644\""
        );
    }

    #[test]
    fn packages_per_family() {
        let r = ComponentRole::parse(
            "x/role.yaml",
            "name: x\nphase: p\nhosts: [worker]\npackages:\n  - haproxy\n  - {name: iptables, rhel: /usr/sbin/iptables, present_if: iptables}\n",
        )
        .unwrap();
        assert_eq!(r.packages[0].for_family(OsFamily::Debian), "haproxy");
        assert_eq!(
            r.packages[1].for_family(OsFamily::Rhel),
            "/usr/sbin/iptables"
        );
        assert_eq!(r.packages[1].for_family(OsFamily::Debian), "iptables");
        assert_eq!(
            r.packages[1].present_test(OsFamily::Rhel),
            "command -v iptables >/dev/null 2>&1"
        );
        assert!(
            ComponentRole::parse(
                "y",
                "name: y\nphase: p\nhosts: [worker]\npackages: [{nme: a}]\n"
            )
            .is_err()
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("rw"), None);
    }
}
