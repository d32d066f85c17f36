//! Every difference between OS families lives here, so no other module checks for RHEL.

use serde::Serialize;

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
    /// Command prefix that installs packages non-interactively.
    pub install_packages: &'static str,
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
                install_packages: "dnf install -y",
                firewalld: true,
                selinux: true,
                cni_bin_dir: "/opt/cni/bin",
            },
            OsFamily::Debian => FamilyTraits {
                family: self,
                install_packages: "DEBIAN_FRONTEND=noninteractive apt-get install -y",
                firewalld: false,
                selinux: false,
                cni_bin_dir: "/usr/lib/cni",
            },
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
    fn parses_fields() {
        let r = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n# c\n",
        );
        assert_eq!(r.id, "debian");
        assert_eq!(r.version_id, "12");
        assert_eq!(r.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }
}
