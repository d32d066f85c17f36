//! Membership hooks (`configure`, `addnodes`, `delnodes`) run in a member's `app` container
//! through the API server's exec (websocket) endpoint, like KubeDirector's startscript calls.
//! The environment (DB_NODES, DB_ROLE, DB_SELF) is passed through `env`, since exec has no
//! environment of its own.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Client;
use kube::api::{Api, AttachParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::FIELD_MANAGER;
use super::error::AppsError;
use super::observe::ANNOTATION_CONFIGURED;

/// The container hooks run in (the catalog contract: one container named `app`).
pub const APP_CONTAINER: &str = "app";
/// Output kept per stream in reports.
const KEEP_OUTPUT: usize = 4000;

/// One hook run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRun {
    pub hook: String,
    pub pod: String,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The argv exec runs: `env K=V ... hook...`.
pub fn command(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    if env.is_empty() {
        return argv.to_vec();
    }
    let mut cmd = vec!["env".to_string()];
    cmd.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend(argv.iter().cloned());
    cmd
}

/// Exit code from the exec Status (`Success`, or `NonZeroExitCode` with an ExitCode cause).
fn exit_code(status: Option<&Status>) -> Result<i32, String> {
    let Some(s) = status else {
        return Err("the exec stream ended without a status".into());
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if s.reason.as_deref() == Some("NonZeroExitCode")
        && let Some(code) = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref()?.parse().ok())
    {
        return Ok(code);
    }
    Err(s
        .message
        .clone()
        .unwrap_or_else(|| "exec failed without a message".into()))
}

fn keep_tail(s: &str) -> String {
    if s.len() <= KEEP_OUTPUT {
        return s.to_string();
    }
    let mut start = s.len() - KEEP_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Run `argv` with `env` in the `app` container of `pod`; a non-zero exit is an error that
/// carries the output.
pub async fn run(
    client: &Client,
    namespace: &str,
    pod: &str,
    hook: &str,
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<HookRun, AppsError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let fail = |detail: String| AppsError::Hook {
        hook: hook.to_string(),
        pod: pod.to_string(),
        detail,
    };
    let ap = AttachParams::default()
        .container(APP_CONTAINER)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let work = async {
        let mut proc = api
            .exec(pod, command(argv, env), &ap)
            .await
            .map_err(|e| fail(format!("exec: {}", super::error::api_message(&e))))?;
        let status = proc.take_status();
        let mut out = proc.stdout();
        let mut err = proc.stderr();
        let (mut o, mut e) = (String::new(), String::new());
        let read_out = async {
            if let Some(r) = out.as_mut() {
                let _ = r.read_to_string(&mut o).await;
            }
        };
        let read_err = async {
            if let Some(r) = err.as_mut() {
                let _ = r.read_to_string(&mut e).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = proc.join().await;
        let code = exit_code(status.as_ref()).map_err(&fail)?;
        Ok::<_, AppsError>(HookRun {
            hook: hook.to_string(),
            pod: pod.to_string(),
            exit_code: code,
            stdout: keep_tail(&o),
            stderr: keep_tail(&e),
        })
    };
    let run = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| fail(format!("no exit within {} s", timeout.as_secs())))??;
    if run.exit_code != 0 {
        return Err(fail(format!(
            "exit code {}{}{}",
            run.exit_code,
            if run.stderr.trim().is_empty() {
                String::new()
            } else {
                format!("; stderr:\n{}", run.stderr.trim_end())
            },
            if run.stdout.trim().is_empty() {
                String::new()
            } else {
                format!("; stdout:\n{}", run.stdout.trim_end())
            },
        )));
    }
    Ok(run)
}

/// Mark `pod` configured (its `configure` hook succeeded), so a re-run skips it; a recreated
/// pod loses the mark and is configured again, as KubeDirector does for new containers.
pub async fn mark_configured(client: &Client, namespace: &str, pod: &str) -> Result<(), AppsError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {ANNOTATION_CONFIGURED: "true"}}});
    api.patch(
        pod,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| AppsError::api("annotate", format!("Pod {namespace}/{pod}"), &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_goes_through_env() {
        let argv = vec!["/hooks/startscript".to_string(), "--addnodes".to_string()];
        assert_eq!(command(&argv, &[]), argv);
        let env = vec![
            ("DB_NODES".to_string(), "a.hs,b.hs".to_string()),
            ("DB_ROLE".to_string(), "worker".to_string()),
        ];
        assert_eq!(
            command(&argv, &env),
            vec![
                "env",
                "DB_NODES=a.hs,b.hs",
                "DB_ROLE=worker",
                "/hooks/startscript",
                "--addnodes"
            ]
        );
    }

    #[test]
    fn exit_codes_from_status() {
        let ok: Status = serde_json::from_value(serde_json::json!({"status": "Success"})).unwrap();
        assert_eq!(exit_code(Some(&ok)), Ok(0));
        let bad: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }))
        .unwrap();
        assert_eq!(exit_code(Some(&bad)), Ok(3));
        let other: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "container not found (\"app\")"
        }))
        .unwrap();
        assert_eq!(
            exit_code(Some(&other)),
            Err("container not found (\"app\")".into())
        );
        assert!(exit_code(None).is_err());
    }

    #[test]
    fn long_output_keeps_its_end() {
        let s = "é".repeat(3000);
        let t = keep_tail(&s);
        assert!(t.starts_with("..."));
        assert!(t.len() <= KEEP_OUTPUT + 4);
    }
}
