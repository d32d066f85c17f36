//! `director-boot deploy-app NAME`: the catalog renders the app (src/catalog), the apps engine
//! applies and watches it through the Kubernetes API (src/apps). Re-running converges: an
//! instance that exists keeps its recorded size and secrets unless `--cluster` says otherwise.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::apps::{deploy_options, fail, kube_target};
use super::catalog::overrides;
use crate::apps::state::StoredInstance;
use crate::apps::{self, AppsError, RenderError};
use crate::catalog::{self, ApiFacts, ClusterInput, Overrides, RenderedApp};
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
        api: None,
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
    let mut user = overrides(spec);
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
    // Rendered again with the API server now known (the app's usage text names it), and
    // from the recorded spec when the instance exists.
    // Apps whose usage text names the kubeconfig get one Java clients (spark-submit) can read.
    let kubeconfig = match catalog::load(app) {
        Ok(loaded) if loaded.app.usage.is_some() => {
            match apps::java_kubeconfig::for_java_clients(&conn.kubeconfig) {
                Ok(p) => p,
                Err(e) => return Ok(fail(&e, json)),
            }
        }
        _ => conn.kubeconfig.clone(),
    };
    user.api = Some(ApiFacts {
        server: conn.server.clone(),
        kubeconfig: kubeconfig.display().to_string(),
    });
    let ov = match apps::state::find(&conn.client, Some(&rendered.namespace), &rendered.instance)
        .await
    {
        Ok(stored) if spec.cluster.is_none() => Overrides {
            cluster: Some(recorded(&stored)),
            ..user
        },
        Ok(_) | Err(AppsError::NoInstance { .. }) => user,
        Err(e) => return Ok(fail(&e, json)),
    };
    rendered = match catalog::prepare(app, &ov) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match apps::deploy(&conn.client, &rendered, &deploy_options(kube, json)).await {
        Ok(outcome) => {
            if json {
                let mut v = serde_json::to_value(&outcome)?;
                if let (Some(usage), Some(m)) = (&rendered.usage, v.as_object_mut()) {
                    m.insert("usage".into(), usage.clone().into());
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", apps::report::deploy(&outcome));
                if let Some(usage) = &rendered.usage {
                    println!("\n{}", usage.trim_end());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let code = fail(&e, json);
            let text = e.to_string();
            if let Some(help) = &rendered.image_help
                && (text.contains("is not available on") || text.contains("cannot be pulled"))
            {
                eprintln!("\n{}", help.trim_end());
            }
            Ok(code)
        }
    }
}
