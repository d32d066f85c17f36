//! A Kubernetes client from a kubeconfig: `--kubeconfig FILE`, else `$KUBECONFIG`, else the
//! admin kubeconfig `director-boot init` wrote for the cluster.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{AppsError, api_message};
use crate::paths::Paths;

/// Where the kubeconfig comes from.
#[derive(Debug, Clone, Default)]
pub struct KubeTarget {
    /// `--kubeconfig FILE`.
    pub kubeconfig: Option<PathBuf>,
    /// `--cluster-name NAME`: pick `<state>/clusters/NAME/admin.conf`.
    pub cluster_name: Option<String>,
}

/// A connected client and what it was made from (for messages).
#[derive(Clone)]
pub struct Connected {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub server: String,
}

/// The kubeconfig file(s) to use, in the order above. `$KUBECONFIG` may list several files
/// (colon-separated), merged like kubectl does.
pub fn resolve_kubeconfig(
    target: &KubeTarget,
    env: Option<&OsStr>,
    paths: &Paths,
) -> Result<Vec<PathBuf>, AppsError> {
    if let Some(p) = &target.kubeconfig {
        return Ok(vec![p.clone()]);
    }
    if target.cluster_name.is_none()
        && let Some(env) = env.filter(|e| !e.is_empty())
    {
        let files: Vec<PathBuf> = std::env::split_paths(env)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let clusters = paths.state.join("clusters");
    let admin =
        |name: &str| crate::cluster_state::ClusterState::new(paths, name).admin_kubeconfig();
    if let Some(name) = &target.cluster_name {
        let file = admin(name);
        if !file.exists() {
            return Err(AppsError::NoKubeconfig {
                looked: format!("{} does not exist", file.display()),
            });
        }
        return Ok(vec![file]);
    }
    let mut names: Vec<String> = std::fs::read_dir(&clusters)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("admin.conf").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    match names.as_slice() {
        [] => Err(AppsError::NoKubeconfig {
            looked: format!(
                "no --kubeconfig, no $KUBECONFIG and no {}",
                clusters.join("*").join("admin.conf").display()
            ),
        }),
        [one] => Ok(vec![admin(one)]),
        _ => Err(AppsError::SeveralClusters {
            dir: clusters,
            names: names.join(", "),
        }),
    }
}

/// Read and merge kubeconfig files.
pub fn read_kubeconfig(files: &[PathBuf]) -> Result<Kubeconfig, AppsError> {
    let mut merged: Option<Kubeconfig> = None;
    for f in files {
        let k = Kubeconfig::read_from(f).map_err(|e| AppsError::Kubeconfig {
            path: f.clone(),
            message: e.to_string(),
        })?;
        merged = Some(match merged {
            None => k,
            Some(m) => m.merge(k).map_err(|e| AppsError::Kubeconfig {
                path: f.clone(),
                message: e.to_string(),
            })?,
        });
    }
    merged.ok_or_else(|| AppsError::NoKubeconfig {
        looked: "an empty list of kubeconfig files".into(),
    })
}

/// Build a client from the files and check the API server answers.
pub async fn connect_files(files: &[PathBuf]) -> Result<Connected, AppsError> {
    let shown = files.first().cloned().unwrap_or_default();
    let kubeconfig = read_kubeconfig(files)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| AppsError::Kubeconfig {
                path: shown.clone(),
                message: e.to_string(),
            })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| AppsError::Kubeconfig {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let refused = |e: &kube::Error| match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => Some(AppsError::Unauthorized {
            path: shown.clone(),
            server: server.clone(),
            message: format!("{} ({})", s.message, s.code),
        }),
        _ => None,
    };
    if let Err(e) = client.apiserver_version().await {
        return Err(refused(&e).unwrap_or_else(|| AppsError::Unreachable {
            path: shown.clone(),
            server: server.clone(),
            message: api_message(&e),
        }));
    }
    // /version may answer anonymous clients; a SelfSubjectReview needs valid credentials.
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = SelfSubjectReview {
        metadata: Default::default(),
        status: None,
    };
    if let Err(e) = reviews.create(&PostParams::default(), &review).await
        && let Some(err) = refused(&e)
    {
        return Err(err);
    }
    // (Other errors, e.g. a server without the API before 1.28: later calls will say.)
    Ok(Connected {
        client,
        kubeconfig: shown,
        server,
    })
}

/// Resolve the kubeconfig (see [`resolve_kubeconfig`]) and connect.
pub async fn connect(target: &KubeTarget, paths: &Paths) -> Result<Connected, AppsError> {
    let env = std::env::var_os("KUBECONFIG");
    let files = resolve_kubeconfig(target, env.as_deref(), paths)?;
    connect_files(&files).await
}

/// Convenience for tests and callers holding one file.
pub async fn connect_file(path: &Path) -> Result<Connected, AppsError> {
    connect_files(&[path.to_path_buf()]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            state: dir.to_path_buf(),
            cache: dir.join("cache"),
        }
    }

    fn admin(dir: &Path, cluster: &str) {
        let d = dir.join("clusters").join(cluster);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("admin.conf"), "apiVersion: v1\n").unwrap();
    }

    #[test]
    fn explicit_beats_env_beats_state() {
        let tmp = tempfile::tempdir().unwrap();
        admin(tmp.path(), "lab");
        let p = paths(tmp.path());
        let explicit = KubeTarget {
            kubeconfig: Some("/x/kc".into()),
            cluster_name: None,
        };
        let env = OsStr::new("/a/one:/b/two");
        assert_eq!(
            resolve_kubeconfig(&explicit, Some(env), &p).unwrap(),
            vec![PathBuf::from("/x/kc")]
        );
        let none = KubeTarget::default();
        assert_eq!(
            resolve_kubeconfig(&none, Some(env), &p).unwrap(),
            vec![PathBuf::from("/a/one"), PathBuf::from("/b/two")]
        );
        assert_eq!(
            resolve_kubeconfig(&none, None, &p).unwrap(),
            vec![tmp.path().join("clusters/lab/admin.conf")]
        );
    }

    #[test]
    fn several_clusters_must_be_chosen() {
        let tmp = tempfile::tempdir().unwrap();
        admin(tmp.path(), "lab");
        admin(tmp.path(), "prod");
        let p = paths(tmp.path());
        let err = resolve_kubeconfig(&KubeTarget::default(), None, &p).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lab, prod"), "{text}");
        assert!(text.contains("--cluster-name NAME"), "{text}");
        let chosen = KubeTarget {
            kubeconfig: None,
            cluster_name: Some("prod".into()),
        };
        // --cluster-name wins over $KUBECONFIG.
        assert_eq!(
            resolve_kubeconfig(&chosen, Some(OsStr::new("/a/one")), &p).unwrap(),
            vec![tmp.path().join("clusters/prod/admin.conf")]
        );
    }

    #[test]
    fn nothing_found_says_to_run_init() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_kubeconfig(&KubeTarget::default(), None, &paths(tmp.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("director-boot init INVENTORY"), "{text}");
        assert!(text.contains("admin.conf"), "{text}");
        let err = resolve_kubeconfig(
            &KubeTarget {
                kubeconfig: None,
                cluster_name: Some("nope".into()),
            },
            None,
            &paths(tmp.path()),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("clusters/nope/admin.conf does not exist")
        );
    }

    #[tokio::test]
    async fn unreachable_server_names_kubeconfig_and_server() {
        // A port nothing listens on (bound then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = tempfile::tempdir().unwrap();
        let kc = tmp.path().join("kc");
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        let err = match connect_file(&kc).await {
            Err(e) => e,
            Ok(_) => panic!("connected to nothing"),
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("https://127.0.0.1:{port}")),
            "{text}"
        );
        assert!(text.contains(&kc.display().to_string()), "{text}");
        assert!(text.contains("director-boot init"), "{text}");
    }
}
