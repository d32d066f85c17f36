//! Host packages a role needs: which are missing is asked in one read-only round trip (the
//! package database, or PATH where the role says so); only those are installed, with the
//! family's command from `osfamily.rs`. A host that has them all never reaches for a mirror.

use super::role::Package;
use crate::node::{Node, NodeError};
use crate::osfamily::{OsFamily, shell_word};

/// The shell command that prints, one a line, the family's name of every package not present.
pub fn missing_probe(family: OsFamily, packages: &[Package]) -> String {
    packages
        .iter()
        .map(|p| {
            format!(
                "{{ {}; }} || echo {}",
                p.present_test(family),
                shell_word(p.for_family(family))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The family's names of the packages the node lacks.
pub async fn missing(
    node: &Node,
    family: OsFamily,
    packages: &[Package],
) -> Result<Vec<String>, NodeError> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let out = node.sudo_ok(&missing_probe(family, packages)).await?;
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::role::PackageSpec;

    #[test]
    fn probe_names_each_missing_package_once() {
        let pkgs = [
            Package::Name("haproxy".into()),
            Package::Spec(PackageSpec {
                name: "conntrack".into(),
                rhel: Some("/usr/sbin/conntrack".into()),
                debian: None,
                present_if: Some("iptables".into()),
            }),
        ];
        assert_eq!(
            missing_probe(OsFamily::Rhel, &pkgs),
            "{ rpm -q --quiet --whatprovides haproxy; } || echo haproxy; \
             { command -v iptables >/dev/null 2>&1; } || echo /usr/sbin/conntrack"
        );
    }
}
