//! `director-boot apps list|status|scale|delete`, and the pieces `deploy-app` shares with it
//! (kubeconfig resolution, options, printing results and not-ready diagnoses).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::apps::state::StoredInstance;
use crate::apps::{
    self, AppsError, DeployOptions, KubeTarget, RenderError, ScaleRequest, WaitPolicy, manage,
    report,
};
use crate::catalog::RenderedApp;
use crate::cli::{AppsArgs, AppsCommand, KubeArgs};
use crate::paths::Paths;

/// Re-renders an instance with new member counts per role (the catalog's `prepare`).
pub type Render<'a> =
    dyn Fn(&StoredInstance, &BTreeMap<String, u32>) -> Result<RenderedApp, RenderError> + 'a;

pub fn kube_target(k: &KubeArgs) -> KubeTarget {
    KubeTarget {
        kubeconfig: k.kubeconfig.clone(),
        cluster_name: k.cluster_name.clone(),
    }
}

pub fn deploy_options(k: &KubeArgs, json: bool) -> DeployOptions {
    DeployOptions {
        wait: WaitPolicy {
            timeout: Duration::from_secs(k.timeout),
            ..WaitPolicy::default()
        },
        json,
        ..DeployOptions::default()
    }
}

/// The result as pretty JSON or as text.
fn render<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) -> String {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => s + "\n",
            Err(e) => format!("{{\"error\": \"cannot serialize the result: {e}\"}}\n"),
        }
    } else {
        text(value)
    }
}

/// Print an error of an apps operation: a not-ready diagnosis goes to stdout as JSON with
/// `--json`; everything else to stderr. Exit 1.
pub fn fail(e: &AppsError, json: bool) -> ExitCode {
    match e {
        AppsError::NotReady(nr) if json => {
            if let Ok(s) = serde_json::to_string_pretty(&serde_json::json!({"not_ready": nr})) {
                println!("{s}");
            }
        }
        _ if json => {
            if let Ok(s) =
                serde_json::to_string_pretty(&serde_json::json!({"error": e.to_string()}))
            {
                println!("{s}");
            }
        }
        _ => {}
    }
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub async fn run(
    paths: &Paths,
    args: AppsArgs,
    json: bool,
    render_fn: &Render<'_>,
) -> anyhow::Result<ExitCode> {
    let k = &args.kube;
    let conn = match apps::connect(&kube_target(k), paths).await {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e, json)),
    };
    let client = &conn.client;
    let ns = k.namespace.as_deref();
    let opts = deploy_options(k, json);
    let result: Result<String, AppsError> = async {
        Ok(match &args.command {
            AppsCommand::List => {
                render(json, &manage::list(client, ns).await?, |i| report::list(i))
            }
            AppsCommand::Status { name } => render(
                json,
                &manage::status(client, ns, name).await?,
                report::status,
            ),
            AppsCommand::Scale {
                name,
                role,
                members,
                delete_data,
            } => {
                let req = ScaleRequest {
                    instance: name.clone(),
                    namespace: k.namespace.clone(),
                    role: role.clone(),
                    members: *members,
                    delete_data: *delete_data,
                };
                render(
                    json,
                    &apps::scale(client, &req, render_fn, &opts).await?,
                    report::scale,
                )
            }
            AppsCommand::Delete { name, delete_data } => render(
                json,
                &manage::delete(client, ns, name, *delete_data, opts.wait).await?,
                report::delete,
            ),
        })
    }
    .await;
    Ok(match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, json),
    })
}
