//! `director-boot certs INVENTORY` (list, warning about what expires within 30 days) and
//! `director-boot certs renew INVENTORY [--all | NAME...]` (`engine::action::certs_renew`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::cli::{CertsArgs, CertsCommand};
use crate::engine::action::certs_renew;
use crate::paths::Paths;
use crate::pki::{self, CertInfo, RENEW_BEFORE_DAYS, Renew};

pub async fn run(
    paths: &Paths,
    args: CertsArgs,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    match (args.command, args.inventory) {
        (Some(CertsCommand::List { inventory }), _) | (None, Some(inventory)) => {
            list(paths, &inventory, json)
        }
        (
            Some(CertsCommand::Renew {
                inventory,
                all,
                names,
                dry_run,
                ssh,
            }),
            _,
        ) => {
            let inv = load_inventory(&inventory)?;
            let which = if all {
                Renew::All
            } else if names.is_empty() {
                Renew::Due
            } else {
                Renew::Named(names.into_iter().collect::<BTreeSet<_>>())
            };
            certs_renew::run(
                paths,
                certs_renew::Request {
                    inv,
                    which,
                    dry_run,
                    fleet: ssh.fleet(),
                    json,
                    verbose,
                },
            )
            .await
        }
        (None, None) => {
            anyhow::bail!("certs: give an INVENTORY to list, or `certs renew INVENTORY ...`")
        }
    }
}

/// The warnings `certs` prints: every certificate that expires within the renewal window.
pub fn expiry_warnings(certs: &[CertInfo]) -> Vec<String> {
    certs
        .iter()
        .filter(|c| c.days_left < RENEW_BEFORE_DAYS)
        .map(|c| {
            let when = if c.days_left < 0 {
                format!("EXPIRED {} days ago", -c.days_left)
            } else {
                format!("expires in {} days", c.days_left)
            };
            if c.is_ca {
                format!("{} (a CA) {when}: plan a CA rotation", c.name)
            } else {
                format!(
                    "{} {when}: renew it with `director-boot certs renew INVENTORY {}` (or init)",
                    c.name, c.name
                )
            }
        })
        .collect()
}

fn list(paths: &Paths, inventory: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let inv = load_inventory(inventory)?;
    let dir = crate::cluster_state::ClusterState::new(paths, &inv.cluster_name).pki_dir();
    if !dir.exists() {
        anyhow::bail!(
            "no PKI for cluster {} at {} yet: run director-boot init first",
            inv.cluster_name,
            dir.display()
        );
    }
    let certs = pki::list(&dir)?;
    let warnings = expiry_warnings(&certs);
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
    } else {
        let rows: Vec<Vec<String>> = certs
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.common_name.clone(),
                    c.issuer_common_name.clone(),
                    c.not_after.date().to_string(),
                    c.days_left.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::output::table(
                &[
                    "CERTIFICATE",
                    "SUBJECT CN",
                    "ISSUER",
                    "EXPIRES",
                    "DAYS LEFT"
                ],
                &rows
            )
        );
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, days_left: i64, is_ca: bool) -> CertInfo {
        let t = time::OffsetDateTime::now_utc();
        CertInfo {
            name: name.into(),
            path: format!("/pki/{name}.crt").into(),
            subject: String::new(),
            common_name: name.into(),
            organizations: vec![],
            issuer: String::new(),
            issuer_common_name: "kubernetes".into(),
            sans: vec![],
            is_ca,
            serial: "01".into(),
            not_before: t,
            not_after: t + time::Duration::days(days_left),
            days_left,
            key_present: true,
        }
    }

    #[test]
    fn certs_warns_about_what_expires_within_30_days() {
        let w = expiry_warnings(&[
            cert("apiserver", 365, false),
            cert("admin", 12, false),
            cert("kubelet-node2", -3, false),
            cert("ca", 20, true),
            cert("scheduler", 30, false),
        ]);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("admin expires in 12 days")
                && w[0].contains("certs renew INVENTORY admin")
        );
        assert!(w[1].contains("kubelet-node2 EXPIRED 3 days ago"));
        assert!(w[2].contains("ca (a CA) expires in 20 days"));
    }
}
