//! Every difference between OS families lives here, so no other module checks for RHEL.

use serde::Serialize;

use crate::node::shell_quote;

/// A package name as a shell word: bare when it is one already (the usual case, and what a
/// reader of the command expects), quoted otherwise.
pub(crate) fn shell_word(p: &str) -> String {
    let plain = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-/:@=".contains(c));
    if plain { p.to_string() } else { shell_quote(p) }
}

/// The parts of /etc/os-release director-boot looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: String,
    pub pretty_name: String,
}

impl OsRelease {
    /// Parse the KEY=value lines of /etc/os-release (quotes optional).
    pub fn parse(text: &str) -> Self {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string();
            match key.trim() {
                "ID" => os.id = value.to_lowercase(),
                "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_lowercase).collect(),
                "VERSION_ID" => os.version_id = value,
                "PRETTY_NAME" => os.pretty_name = value,
                _ => {}
            }
        }
        os
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    Rhel,
    Debian,
}

/// How a family does the things director-boot needs done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyTraits {
    pub family: OsFamily,
    /// Whether hosts of this family usually run firewalld (ports must be opened there).
    pub firewalld: bool,
    /// Whether SELinux is expected (and kept enforcing).
    pub selinux: bool,
    /// Where the distribution's CNI plugins live when installed from packages.
    pub cni_bin_dir: &'static str,
}

const RHEL_IDS: &[&str] = &["rhel", "centos", "rocky", "almalinux", "fedora", "ol"];
const DEBIAN_IDS: &[&str] = &["debian", "ubuntu"];

impl OsFamily {
    /// Classify by ID, then by ID_LIKE; `None` for families director-boot does not support.
    pub fn detect(os: &OsRelease) -> Option<OsFamily> {
        let matches = |ids: &[&str]| {
            ids.contains(&os.id.as_str()) || os.id_like.iter().any(|l| ids.contains(&l.as_str()))
        };
        if matches(RHEL_IDS) {
            Some(OsFamily::Rhel)
        } else if matches(DEBIAN_IDS) {
            Some(OsFamily::Debian)
        } else {
            None
        }
    }

    pub fn traits(self) -> FamilyTraits {
        match self {
            OsFamily::Rhel => FamilyTraits {
                family: self,
                firewalld: true,
                selinux: true,
                cni_bin_dir: "/opt/cni/bin",
            },
            OsFamily::Debian => FamilyTraits {
                family: self,
                firewalld: false,
                selinux: false,
                cni_bin_dir: "/usr/lib/cni",
            },
        }
    }

    /// A read-only shell test that succeeds when `package` is installed. On RHEL-family hosts
    /// `package` may also be a file path (`/usr/sbin/iptables`): rpm resolves what provides it.
    pub fn package_installed(self, package: &str) -> String {
        let q = shell_word(package);
        match self {
            OsFamily::Rhel => format!("rpm -q --quiet --whatprovides {q}"),
            OsFamily::Debian => {
                format!("dpkg-query -W -f='${{Status}}' {q} 2>/dev/null | grep -q 'ok installed'")
            }
        }
    }

    /// The root command that installs `packages` non-interactively. apt's index is refreshed
    /// only when the first try fails, so a host whose index is current never needs a mirror
    /// for the lists.
    pub fn install_packages(self, packages: &[String]) -> String {
        let list = packages
            .iter()
            .map(|p| shell_word(p))
            .collect::<Vec<_>>()
            .join(" ");
        match self {
            OsFamily::Rhel => format!("dnf install -y {list}"),
            OsFamily::Debian => format!(
                "export DEBIAN_FRONTEND=noninteractive; apt-get install -y {list} || {{ apt-get update && apt-get install -y {list}; }}"
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OsFamily::Rhel => "rhel",
            OsFamily::Debian => "debian",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> Option<OsFamily> {
        OsFamily::detect(&OsRelease::parse(text))
    }

    #[test]
    fn classifies_common_distributions() {
        assert_eq!(
            os("ID=rocky\nID_LIKE=\"rhel centos fedora\"\n"),
            Some(OsFamily::Rhel)
        );
        assert_eq!(os("ID=\"almalinux\"\n"), Some(OsFamily::Rhel));
        assert_eq!(os("ID=fedora\n"), Some(OsFamily::Rhel));
        assert_eq!(
            os("ID=\"rhel\"\nVERSION_ID=\"9.4\"\n"),
            Some(OsFamily::Rhel)
        );
        assert_eq!(os("ID=debian\nVERSION_ID=\"12\"\n"), Some(OsFamily::Debian));
        assert_eq!(os("ID=ubuntu\nID_LIKE=debian\n"), Some(OsFamily::Debian));
        assert_eq!(
            os("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Some(OsFamily::Debian)
        );
        assert_eq!(os("ID=alpine\n"), None);
    }

    #[test]
    fn package_commands() {
        assert_eq!(
            OsFamily::Rhel.install_packages(&["/usr/sbin/iptables".into(), "haproxy".into()]),
            "dnf install -y /usr/sbin/iptables haproxy"
        );
        assert_eq!(
            OsFamily::Debian.install_packages(&["iptables".into()]),
            "export DEBIAN_FRONTEND=noninteractive; apt-get install -y iptables || { apt-get update && apt-get install -y iptables; }"
        );
        assert_eq!(
            OsFamily::Rhel.package_installed("haproxy"),
            "rpm -q --quiet --whatprovides haproxy"
        );
    }

    #[test]
    fn parses_fields() {
        let r = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n# c\n",
        );
        assert_eq!(r.id, "debian");
        assert_eq!(r.version_id, "12");
        assert_eq!(r.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }
}
