//! `director-boot deploy-app NAME`: the catalog renders the app (src/catalog), the apps engine
//! applies and watches it through the Kubernetes API (src/apps). Re-running converges: an
//! instance that exists keeps its recorded size and secrets unless `--cluster` says otherwise.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::apps::{deploy_options, fail, kube_target};
use super::catalog::overrides;
use crate::apps::state::StoredInstance;
use crate::apps::{self, AppsError, RenderError};
use crate::catalog::{self, ClusterInput, Overrides, RenderedApp};
use crate::cli::{AppSpecArgs, KubeArgs};
use crate::paths::Paths;

fn recorded(stored: &StoredInstance) -> ClusterInput {
    ClusterInput::Text {
        name: format!("the recorded spec of {}", stored.instance),
        text: stored.cluster_spec_yaml.clone(),
    }
}

/// Re-render an instance with new member counts (for `apps scale`).
pub fn rerender(
    stored: &StoredInstance,
    members: &BTreeMap<String, u32>,
) -> Result<RenderedApp, RenderError> {
    let ov = Overrides {
        cluster: Some(recorded(stored)),
        sets: members
            .iter()
            .map(|(role, n)| format!("{role}.members={n}"))
            .collect(),
        namespace: Some(stored.namespace.clone()),
        instance: Some(stored.instance.clone()),
    };
    catalog::prepare(&stored.app, &ov).map_err(|e| e.to_string().into())
}

pub async fn run(
    paths: &Paths,
    app: &str,
    spec: &AppSpecArgs,
    kube: &KubeArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let user = overrides(spec);
    let mut rendered = match catalog::prepare(app, &user) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let conn = match apps::connect(&kube_target(kube), paths).await {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e, json)),
    };
    match apps::state::find(&conn.client, Some(&rendered.namespace), &rendered.instance).await {
        Ok(stored) if spec.cluster.is_none() => {
            let ov = Overrides {
                cluster: Some(recorded(&stored)),
                ..user
            };
            rendered = match catalog::prepare(app, &ov) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
        }
        Ok(_) | Err(AppsError::NoInstance { .. }) => {}
        Err(e) => return Ok(fail(&e, json)),
    }
    match apps::deploy(&conn.client, &rendered, &deploy_options(kube, json)).await {
        Ok(outcome) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print!("{}", apps::report::deploy(&outcome));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e, json)),
    }
}
