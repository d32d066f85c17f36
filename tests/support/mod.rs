//! A real etcd and a real kube-apiserver on 127.0.0.1 for API tests: certificates from the
//! crate's own PKI module, free loopback ports, logs in a temp dir; both processes are killed
//! by the PIDs this harness started, and the temp dir is removed, on drop.
#![allow(dead_code)]

pub mod fixtures;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use director_boot::pki::{self, Member, PkiSpec};

/// The mirror's binaries (etcd, kube-apiserver), or None with the reason to skip.
pub fn mirror_bin() -> Result<PathBuf, String> {
    let cache = std::env::var_os("DIRECTOR_BOOT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|c| c.join("director-boot")))
        .ok_or("no cache directory")?;
    let bin = cache.join("mirror/bin");
    for b in ["etcd", "kube-apiserver"] {
        if !bin.join(b).is_file() {
            return Err(format!(
                "{} is missing (build the artifact mirror first)",
                bin.join(b).display()
            ));
        }
    }
    Ok(bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct TestApiServer {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    pub kubeconfig: PathBuf,
    pub server: String,
}

impl TestApiServer {
    /// Start etcd and kube-apiserver; Err(reason) when the binaries are absent.
    pub fn start() -> Result<TestApiServer, String> {
        let bin = mirror_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("dbt-apiserver-")
            .tempdir()
            .expect("temp dir");
        let pki_dir = dir.path().join("pki");
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let spec = PkiSpec {
            cluster_name: "dbtest".into(),
            control_plane: vec![Member::new("localhost", lo)],
            etcd: vec![Member::new("localhost", lo)],
            nodes: vec![],
            service_cidr: "10.96.0.0/12".parse().expect("cidr"),
            cluster_domain: "cluster.local".into(),
            apiserver_extra_sans: vec![],
        };
        pki::ensure(&pki_dir, &spec).expect("test PKI");

        let (etcd_client, etcd_peer, api_port) = (free_port(), free_port(), free_port());
        let mut me = TestApiServer {
            kubeconfig: dir.path().join("admin.conf"),
            server: format!("https://127.0.0.1:{api_port}"),
            dir,
            children: Vec::new(),
        };
        let d = me.dir.path().to_path_buf();
        me.spawn(
            "etcd",
            Command::new(bin.join("etcd")).args([
                "--name=dbt",
                &format!("--data-dir={}", d.join("etcd").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-cluster=dbt=http://127.0.0.1:{etcd_peer}"),
            ]),
        );
        let p = |f: &str| pki_dir.join(f).display().to_string();
        me.spawn(
            "kube-apiserver",
            Command::new(bin.join("kube-apiserver")).args([
                &format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={api_port}"),
                &format!("--cert-dir={}", d.join("apiserver-certs").display()),
                &format!("--tls-cert-file={}", p("apiserver.crt")),
                &format!("--tls-private-key-file={}", p("apiserver.key")),
                &format!("--client-ca-file={}", p("ca.crt")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={}", p("sa.pub")),
                &format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/12",
                "--authorization-mode=Node,RBAC",
                // No controller-manager runs: nothing would create ServiceAccounts or remove
                // the PVC-protection finalizer.
                "--disable-admission-plugins=ServiceAccount,StorageObjectInUseProtection",
            ]),
        );
        let yaml = pki::kubeconfig_from_dir(&pki_dir, "admin", "dbtest", &me.server, "admin")
            .expect("admin kubeconfig");
        std::fs::write(&me.kubeconfig, yaml).expect("write kubeconfig");
        Ok(me)
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of a process's log (for failure messages).
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until the API server serves requests and has created the `default` namespace.
    pub async fn ready(&mut self, limit: Duration) -> kube::Client {
        let start = Instant::now();
        loop {
            for (name, c) in self.children.iter_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("{name} exited ({status}):\n{}", {
                        let text =
                            std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                                .unwrap_or_default();
                        let lines: Vec<&str> = text.lines().collect();
                        lines[lines.len().saturating_sub(30)..].join("\n")
                    });
                }
            }
            if let Ok(conn) = director_boot::apps::client::connect_file(&self.kubeconfig).await {
                let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                    kube::Api::all(conn.client.clone());
                if matches!(ns.get_opt("default").await, Ok(Some(_))) {
                    return conn.client;
                }
            }
            assert!(
                start.elapsed() < limit,
                "kube-apiserver not ready after {limit:?}:\n{}",
                self.log_tail("kube-apiserver")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        // Only the processes this harness started, by their PIDs; apiserver before etcd.
        for (_, c) in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
