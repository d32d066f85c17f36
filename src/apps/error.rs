use std::path::PathBuf;

use super::watch::NotReady;

/// Everything that can go wrong talking to the cluster about an app.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error(
        "no kubeconfig: {looked}; run `director-boot init INVENTORY` first, or pass --kubeconfig FILE"
    )]
    NoKubeconfig { looked: String },
    #[error(
        "several clusters have an admin kubeconfig under {}: {names}; choose one with --cluster-name NAME",
        dir.display()
    )]
    SeveralClusters { dir: PathBuf, names: String },
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig { path: PathBuf, message: String },
    #[error(
        "cannot reach the API server {server} (kubeconfig {}): {message}; is the cluster up? (`director-boot init INVENTORY` builds or repairs it)",
        path.display()
    )]
    Unreachable {
        path: PathBuf,
        server: String,
        message: String,
    },
    #[error(
        "the API server {server} refuses the credentials in kubeconfig {}: {message}; use the admin kubeconfig `director-boot init INVENTORY` writes (or pass --kubeconfig FILE)",
        path.display()
    )]
    Unauthorized {
        path: PathBuf,
        server: String,
        message: String,
    },
    #[error("rendered object {index} of {section} is malformed: {reason}")]
    BadObject {
        section: String,
        index: usize,
        reason: String,
    },
    #[error("{object}: the API server does not serve {api_version} {kind} ({message})")]
    UnknownKind {
        object: String,
        api_version: String,
        kind: String,
        message: String,
    },
    #[error("the API server rejected {} of the rendered objects in a dry run; nothing was applied:{}", rejections.len(), list(rejections))]
    DryRunRejected { rejections: Vec<Rejection> },
    #[error("{action} {object}: {message}")]
    Api {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("role {role} depends on {dep}, which is not a role rendered before it")]
    BadDependency { role: String, dep: String },
    #[error("no app instance {name}{}", in_ns(namespace.as_deref()))]
    NoInstance {
        name: String,
        namespace: Option<String>,
    },
    #[error(
        "app instance {name} exists in several namespaces ({namespaces}); choose one with --namespace"
    )]
    AmbiguousInstance { name: String, namespaces: String },
    #[error(
        "the recorded state of {instance} (ConfigMap {namespace}/{configmap}) is unreadable: {reason}"
    )]
    BadState {
        instance: String,
        namespace: String,
        configmap: String,
        reason: String,
    },
    #[error("{instance} has no role {role} (roles: {roles})")]
    NoRole {
        instance: String,
        role: String,
        roles: String,
    },
    #[error("{0}")]
    OutOfRange(String),
    #[error(
        "role {role} of {instance} is mid-change ({detail}); wait until it settles (`director-boot apps status {instance}`) and retry"
    )]
    MidChange {
        instance: String,
        role: String,
        detail: String,
    },
    #[error("re-rendering {instance} with {role}={members} members failed: {message}")]
    Render {
        instance: String,
        role: String,
        members: u32,
        message: String,
    },
    #[error("the re-rendered {instance} {problem}")]
    RenderMismatch { instance: String, problem: String },
    #[error("{hook} hook failed in {pod}: {detail}")]
    Hook {
        hook: String,
        pod: String,
        detail: String,
    },
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { secs: u64, what: String },
    #[error("{0}")]
    NotReady(Box<NotReady>),
}

/// One object the API server refused in the dry run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// e.g. `StatefulSet apps/spark-worker`.
    pub object: String,
    pub message: String,
}

fn list(r: &[Rejection]) -> String {
    r.iter()
        .map(|r| format!("\n  {}: {}", r.object, r.message))
        .collect()
}

fn in_ns(ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!(" in namespace {ns}"),
        None => " in any namespace".to_string(),
    }
}

/// The API server's own message for an error (its Status message), else the error and
/// its causes (a TLS or connection failure is only named in the innermost one).
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => {
            let mut parts = vec![other.to_string()];
            let mut cur = std::error::Error::source(other);
            while let Some(c) = cur {
                let text = c.to_string();
                if !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                cur = c.source();
            }
            parts.join(": ")
        }
    }
}

/// Whether the API server answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl AppsError {
    pub fn api(action: &'static str, object: impl Into<String>, e: &kube::Error) -> Self {
        AppsError::Api {
            action,
            object: object.into(),
            message: api_message(e),
        }
    }
}
