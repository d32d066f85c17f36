//! kubeconfig rendering (serde structs, embedded base64 `*-data` fields).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::error::{PkiError, Result};
use super::fsio::read_opt;
use super::spec::layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub users: Vec<NamedUser>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    #[serde(default)]
    pub preferences: serde_yaml::Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEntry {
    pub server: String,
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: UserEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    #[serde(rename = "client-certificate-data")]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    pub client_key_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
}

impl Kubeconfig {
    /// One cluster, one user, one context `<user>@<cluster>` (current).
    pub fn new(
        cluster: &str,
        server_url: &str,
        ca_pem: &str,
        user: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Self {
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster.into(),
                cluster: ClusterEntry {
                    server: server_url.into(),
                    certificate_authority_data: STANDARD.encode(ca_pem),
                },
            }],
            users: vec![NamedUser {
                name: user.into(),
                user: UserEntry {
                    client_certificate_data: STANDARD.encode(cert_pem),
                    client_key_data: STANDARD.encode(key_pem),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextEntry {
                    cluster: cluster.into(),
                    user: user.into(),
                },
            }],
            current_context: context,
            preferences: serde_yaml::Mapping::new(),
        }
    }

    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(|e| PkiError::Kubeconfig(e.to_string()))
    }
}

/// Render a kubeconfig with the CA, client certificate and key embedded.
pub fn kubeconfig(
    cluster: &str,
    server_url: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<String> {
    if cluster.is_empty() || user.is_empty() {
        return Err(PkiError::Kubeconfig(
            "cluster and user must not be empty".into(),
        ));
    }
    if !server_url.starts_with("https://") {
        return Err(PkiError::Kubeconfig(format!(
            "server URL {server_url:?} must start with https://"
        )));
    }
    Kubeconfig::new(cluster, server_url, ca_pem, user, cert_pem, key_pem).to_yaml()
}

/// Like [`kubeconfig`], reading the cluster CA and `<stem>.crt`/`<stem>.key`
/// from the PKI directory (`stem` e.g. [`layout::ADMIN`] or
/// [`layout::kubelet_client`]).
pub fn kubeconfig_from_dir(
    dir: &Path,
    stem: &str,
    cluster: &str,
    server_url: &str,
    user: &str,
) -> Result<String> {
    let read = |name: String| -> Result<String> {
        let path = dir.join(&name);
        read_opt(&path)?.ok_or_else(|| PkiError::Io {
            action: "read",
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing; run the PKI step (pki::ensure) first",
            ),
        })
    };
    let ca = read(layout::cert_file(layout::CA))?;
    let cert = read(layout::cert_file(stem))?;
    let key = read(layout::key_file(stem))?;
    kubeconfig(cluster, server_url, &ca, user, &cert, &key)
}
