use std::path::Path;
use std::process::ExitCode;

use super::connect::load_inventory;
use crate::paths::Paths;
use crate::pki;

pub fn run(paths: &Paths, inventory: &Path, json: bool) -> anyhow::Result<ExitCode> {
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
    if json {
        println!("{}", serde_json::to_string_pretty(&certs)?);
        return Ok(ExitCode::SUCCESS);
    }
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
    Ok(ExitCode::SUCCESS)
}
