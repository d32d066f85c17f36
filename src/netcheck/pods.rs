//! netcheck's pods mode: the probe servers run as a DaemonSet from an image built from this
//! binary (side-loaded into every node's containerd), and the client runs inside the local
//! probe pod with `crictl exec`, so every measurement is container to container.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::probe_image::{ENTRYPOINT, ProbeImage};
use crate::engine::image_archive::ImageArchive;
use crate::engine::images::{self, Ctr};
use crate::engine::kubectl::Kubectl;
use crate::engine::render::Renderer;
use crate::node::{Node, shell_quote};

const NAME: &str = "director-boot-netcheck";
const PEER: &str = "director-boot-netcheck-peer";
/// The pod label telling the second probe pod of a node (same-node pairs) from the first.
const COMPONENT: &str = "app.kubernetes.io/component";

/// The probe pods found ready.
#[derive(Debug, Default)]
pub struct PodProbes {
    /// node -> (pod IP, command prefix that runs the probe inside that pod).
    pub main: BTreeMap<String, (IpAddr, String)>,
    /// node -> IP of the node's second probe pod (same-node pairs).
    pub peer: BTreeMap<String, IpAddr>,
}

/// Put the probe image into a node's containerd with the shared side-loader (`images load`):
/// staged by sha256, imported only when containerd lacks it.
pub async fn load_image(n: &Node, image: &ProbeImage) -> anyhow::Result<()> {
    let archive = ImageArchive::open(&image.archive)?;
    images::load_archives(n, &[archive], &Ctr::default(), &|_| {}).await?;
    Ok(())
}

/// Remove the DaemonSets and the Service (also stale ones from an interrupted run).
pub async fn stop(cp: &Node) -> anyhow::Result<()> {
    Kubectl::on(cp)
        .run(&format!(
            "-n kube-system delete daemonset/{NAME} daemonset/{PEER} service/{NAME} \
             endpointslice.discovery.k8s.io/{NAME}-probe --ignore-not-found --wait=false"
        ))
        .await?;
    Ok(())
}

/// Put a NodePort Service in front of the probe pod at `endpoint` (on `node`): returns its
/// ClusterIP and NodePort.
pub async fn expose(
    cp: &Node,
    renderer: &Renderer,
    endpoint: IpAddr,
    node: &str,
    port: u16,
) -> anyhow::Result<(IpAddr, u16)> {
    let mut ctx = tera::Context::new();
    ctx.insert("port", &port);
    ctx.insert("endpoint", &endpoint.to_string());
    ctx.insert("node", node);
    ctx.insert(
        "address_type",
        if endpoint.is_ipv4() { "IPv4" } else { "IPv6" },
    );
    let manifest = renderer.render("netcheck/service.yaml", &ctx)?;
    Kubectl::on(cp)
        .apply(&manifest)
        .await
        .context("creating the probe Service")?;
    let out = Kubectl::on(cp)
        .run(&format!("-n kube-system get service {NAME} -o json"))
        .await?;
    let svc: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("reading service {NAME}: {}", out.stdout.trim()))?;
    service_address(&svc).with_context(|| format!("service {NAME} has no ClusterIP or NodePort"))
}

/// A Service's ClusterIP and first NodePort.
fn service_address(svc: &serde_json::Value) -> Option<(IpAddr, u16)> {
    let ip = svc["spec"]["clusterIP"].as_str()?.parse().ok()?;
    let port = svc["spec"]["ports"][0]["nodePort"].as_u64()?;
    Some((ip, u16::try_from(port).ok()?))
}

/// What the probe pods run.
pub struct PodSpec<'a> {
    pub image: &'a ProbeImage,
    pub port: u16,
    /// The servers exit after this long idle.
    pub max_secs: u64,
    /// Also a second probe pod per node (same-node pairs).
    pub peer: bool,
}

/// Start the DaemonSet(s) and wait until every node in `nodes` runs a ready probe pod (and a
/// peer, when asked for).
pub async fn start(
    cp: &Node,
    nodes: &[&Node],
    renderer: &Renderer,
    spec: &PodSpec<'_>,
    wait: Duration,
) -> anyhow::Result<PodProbes> {
    let PodSpec {
        image,
        port,
        max_secs,
        peer,
    } = *spec;
    let mut ctx = tera::Context::new();
    ctx.insert("image", &image.reference);
    ctx.insert("port", &port);
    ctx.insert("max_secs", &max_secs);
    ctx.insert("peer", &peer);
    let manifest = renderer.render("netcheck/daemonset.yaml", &ctx)?;
    Kubectl::on(cp)
        .apply(&manifest)
        .await
        .context("creating the probe DaemonSet")?;
    let deadline = Instant::now() + wait;
    let (pods, peers) = loop {
        let out = Kubectl::on(cp)
            .run(&format!(
                "-n kube-system get pods -l app.kubernetes.io/name={NAME} -o json"
            ))
            .await?;
        let list: serde_json::Value = serde_json::from_str(&out.stdout)?;
        let ready = ready_pods(&list, &image.reference, false);
        let peers = ready_pods(&list, &image.reference, true);
        let missing: Vec<&str> = nodes
            .iter()
            .map(|n| n.name())
            .filter(|n| !ready.contains_key(*n) || (peer && !peers.contains_key(*n)))
            .collect();
        if missing.is_empty() {
            break (ready, peers);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "no ready probe pod on {} after {} s ({})",
                missing.join(", "),
                wait.as_secs(),
                why_not_ready(&list)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut out = PodProbes {
        peer: peers.into_iter().map(|(n, (ip, _))| (n, ip)).collect(),
        ..PodProbes::default()
    };
    for n in nodes {
        let Some((ip, pod)) = pods.get(n.name()) else {
            continue;
        };
        let id = n
            .sudo_ok(&format!(
                "crictl ps -q --name '^probe$' --label io.kubernetes.pod.namespace=kube-system --label io.kubernetes.pod.name={}",
                shell_quote(pod)
            ))
            .await?;
        let id = id.stdout.lines().next().unwrap_or("").trim().to_string();
        if id.is_empty() {
            anyhow::bail!("{}: probe pod {pod} has no running container", n.name());
        }
        out.main.insert(
            n.name().to_string(),
            (*ip, format!("crictl exec {id} {ENTRYPOINT}")),
        );
    }
    Ok(out)
}

/// Running, ready probe pods of this image, the peers or the others: node -> (pod IP, pod name).
fn ready_pods(
    list: &serde_json::Value,
    image: &str,
    peer: bool,
) -> BTreeMap<String, (IpAddr, String)> {
    let mut out = BTreeMap::new();
    for p in list["items"].as_array().into_iter().flatten() {
        if (p["metadata"]["labels"][COMPONENT] == "peer") != peer {
            continue;
        }
        let ready = p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["ready"] == true));
        let same_image = p["spec"]["containers"][0]["image"] == image;
        let deleting = !p["metadata"]["deletionTimestamp"].is_null();
        let (Some(node), Some(ip), Some(name)) = (
            p["spec"]["nodeName"].as_str(),
            p["status"]["podIP"].as_str().and_then(|i| i.parse().ok()),
            p["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        if ready && same_image && !deleting && p["status"]["phase"] == "Running" {
            out.insert(node.to_string(), (ip, name.to_string()));
        }
    }
    out
}

/// The first waiting reason among the pods, for the error message.
fn why_not_ready(list: &serde_json::Value) -> String {
    for p in list["items"].as_array().into_iter().flatten() {
        for c in p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(w) = c["state"]["waiting"].as_object() {
                return format!(
                    "{} on {}: {} {}",
                    p["metadata"]["name"].as_str().unwrap_or("?"),
                    p["spec"]["nodeName"].as_str().unwrap_or("?"),
                    w.get("reason").and_then(|r| r.as_str()).unwrap_or(""),
                    w.get("message").and_then(|r| r.as_str()).unwrap_or("")
                );
            }
        }
    }
    "pods not scheduled or not started yet".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_ready_pods_of_this_image_count() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "spec": {"nodeName": "node1", "containers": [{"image": "img:1"}]},
             "status": {"phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [{"ready": true}]}},
            {"metadata": {"name": "b"}, "spec": {"nodeName": "node2", "containers": [{"image": "img:0"}]},
             "status": {"phase": "Running", "podIP": "10.244.1.5", "containerStatuses": [{"ready": true}]}},
            {"metadata": {"name": "c"}, "spec": {"nodeName": "node3", "containers": [{"image": "img:1"}]},
             "status": {"phase": "Pending", "containerStatuses": [{"ready": false,
               "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}}]}}
        ]});
        let r = ready_pods(&list, "img:1", false);
        assert_eq!(r.len(), 1);
        assert_eq!(r["node1"].1, "a");
        assert!(ready_pods(&list, "img:1", true).is_empty());
        assert_eq!(
            why_not_ready(&list),
            "c on node3: ErrImageNeverPull not present"
        );
    }

    #[test]
    fn peer_pods_are_told_apart_by_their_component_label() {
        let pod = |name: &str, node: &str, ip: &str, component: &str| {
            serde_json::json!({"metadata": {"name": name, "labels": {COMPONENT: component}},
                "spec": {"nodeName": node, "containers": [{"image": "img:1"}]},
                "status": {"phase": "Running", "podIP": ip, "containerStatuses": [{"ready": true}]}})
        };
        let list = serde_json::json!({"items": [
            pod("main-1", "node1", "10.244.0.5", "server"),
            pod("peer-1", "node1", "10.244.0.6", "peer"),
        ]});
        assert_eq!(ready_pods(&list, "img:1", false)["node1"].1, "main-1");
        assert_eq!(ready_pods(&list, "img:1", true)["node1"].1, "peer-1");
    }

    #[test]
    fn a_service_gives_its_cluster_ip_and_node_port() {
        let svc = serde_json::json!({"spec": {"clusterIP": "10.96.0.17",
            "ports": [{"name": "probe", "port": 5299, "nodePort": 31234}]}});
        assert_eq!(
            service_address(&svc),
            Some(("10.96.0.17".parse().unwrap(), 31234))
        );
        assert_eq!(service_address(&serde_json::json!({"spec": {}})), None);
    }
}
