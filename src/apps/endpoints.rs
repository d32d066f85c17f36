//! The endpoints table: for every member and service port, the node address and NodePort a
//! client outside the cluster uses, and the URL when the port has a scheme.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::error::AppsError;
use super::state::RoleRecord;
use crate::catalog::{EndpointSpec, LABEL_INSTANCE};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub role: String,
    pub member: String,
    pub service: String,
    /// `node-ip:nodePort`, or `service.ns.svc:port` when the Service has no NodePort (inside
    /// the cluster only), or None when the member or its Service does not exist yet.
    pub address: Option<String>,
    pub url: Option<String>,
    pub dashboard: bool,
    /// The address works only inside the cluster.
    pub internal: bool,
}

/// Member Service name (the catalog contract: `<statefulset>-<ordinal>`).
pub fn member_service(statefulset: &str, ordinal: u32) -> String {
    format!("{statefulset}-{ordinal}")
}

fn url(spec: &EndpointSpec, address: &str) -> Option<String> {
    let scheme = spec.url_scheme.as_deref()?;
    let path = match spec.path.as_deref() {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None if scheme == "http" || scheme == "https" => "/".to_string(),
        None => String::new(),
    };
    Some(format!("{scheme}://{address}{path}"))
}

/// The InternalIP of a node (else its first address).
pub fn node_address(node: &Node) -> Option<String> {
    let addrs = node.status.as_ref()?.addresses.as_ref()?;
    addrs
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .or_else(|| addrs.first())
        .map(|a| a.address.clone())
}

/// Build the rows of one role from what exists now.
pub fn rows(
    role: &RoleRecord,
    namespace: &str,
    services: &HashMap<String, Service>,
    pods: &HashMap<String, Pod>,
    nodes: &HashMap<String, Node>,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for ordinal in 0..role.members {
        let member = format!("{}-{ordinal}", role.statefulset);
        let svc_name = member_service(&role.statefulset, ordinal);
        let svc = services.get(&svc_name);
        let node_ip = pods
            .get(&member)
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
            .and_then(|n| nodes.get(&n))
            .and_then(node_address);
        for spec in &role.endpoints {
            let port = svc
                .and_then(|s| s.spec.as_ref()?.ports.as_ref())
                .and_then(|ps| ps.iter().find(|p| p.port == i32::from(spec.port)));
            let (address, internal) = match (port.and_then(|p| p.node_port), &node_ip) {
                (Some(np), Some(ip)) => (Some(format!("{ip}:{np}")), false),
                (Some(_), None) => (None, false),
                (None, _) if port.is_some() => (
                    Some(format!("{svc_name}.{namespace}.svc:{}", spec.port)),
                    true,
                ),
                (None, _) => (None, false),
            };
            out.push(Endpoint {
                role: role.id.clone(),
                member: member.clone(),
                service: spec.id.clone(),
                url: address.as_deref().and_then(|a| url(spec, a)),
                address,
                dashboard: spec.dashboard,
                internal,
            });
        }
    }
    out
}

/// Fetch Services, pods and nodes and build the table for every role.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    instance: &str,
    roles: &[RoleRecord],
) -> Result<Vec<Endpoint>, AppsError> {
    if roles
        .iter()
        .all(|r| r.endpoints.is_empty() || r.members == 0)
    {
        return Ok(Vec::new());
    }
    let sel = format!("{LABEL_INSTANCE}={instance}");
    let lp = ListParams::default().labels(&sel);
    let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
    let services: HashMap<String, Service> = svcs
        .list(&lp)
        .await
        .map_err(|e| AppsError::api("list Services of", instance.to_string(), &e))?
        .items
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods = HashMap::new();
    for r in roles {
        for o in 0..r.members {
            let name = format!("{}-{o}", r.statefulset);
            if let Some(p) = pod_api
                .get_opt(&name)
                .await
                .map_err(|e| AppsError::api("read", format!("Pod {namespace}/{name}"), &e))?
            {
                pods.insert(name, p);
            }
        }
    }
    let node_api: Api<Node> = Api::all(client.clone());
    let mut nodes = HashMap::new();
    for p in pods.values() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone())
            && !nodes.contains_key(&n)
            && let Some(node) = node_api
                .get_opt(&n)
                .await
                .map_err(|e| AppsError::api("read", format!("Node {n}"), &e))?
        {
            nodes.insert(n, node);
        }
    }
    Ok(roles
        .iter()
        .flat_map(|r| rows(r, namespace, &services, &pods, &nodes))
        .collect())
}

/// The table as text.
pub fn table(endpoints: &[Endpoint]) -> String {
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.role.clone(),
                e.member.clone(),
                e.service.clone(),
                e.address.clone().unwrap_or_else(|| "-".into()),
                e.url.clone().unwrap_or_else(|| "-".into()),
                if e.dashboard {
                    "*".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    crate::output::table(
        &["ROLE", "MEMBER", "SERVICE", "ADDRESS", "URL", "DASHBOARD"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Hooks;
    use serde_json::json;

    fn role() -> RoleRecord {
        RoleRecord {
            id: "master".into(),
            members: 1,
            min_members: 1,
            max_members: Some(1),
            depends_on: vec![],
            statefulset: "spark-master".into(),
            endpoints: vec![
                EndpointSpec {
                    id: "spark-master".into(),
                    port: 7077,
                    url_scheme: Some("spark".into()),
                    path: None,
                    dashboard: false,
                },
                EndpointSpec {
                    id: "master-ui".into(),
                    port: 8080,
                    url_scheme: Some("http".into()),
                    path: None,
                    dashboard: true,
                },
                EndpointSpec {
                    id: "rest".into(),
                    port: 6066,
                    url_scheme: None,
                    path: None,
                    dashboard: false,
                },
            ],
            hooks: Hooks::default(),
        }
    }

    #[test]
    fn node_ip_and_node_port_make_the_url() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "spark-master-0"},
            "spec": {"type": "NodePort", "ports": [
                {"name": "spark-spark-master", "port": 7077, "nodePort": 30077},
                {"name": "http-master-ui", "port": 8080, "nodePort": 31080},
                {"name": "generic-rest", "port": 6066, "nodePort": 30066}]}
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "spark-master-0"},
            "spec": {"nodeName": "node2", "containers": [{"name": "app"}]}
        }))
        .unwrap();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node2"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "node2"},
                {"type": "InternalIP", "address": "10.77.0.12"}]}
        }))
        .unwrap();
        let rows = rows(
            &role(),
            "apps",
            &HashMap::from([("spark-master-0".to_string(), svc)]),
            &HashMap::from([("spark-master-0".to_string(), pod)]),
            &HashMap::from([("node2".to_string(), node)]),
        );
        let got: Vec<(Option<&str>, Option<&str>, bool)> = rows
            .iter()
            .map(|r| (r.address.as_deref(), r.url.as_deref(), r.dashboard))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Some("10.77.0.12:30077"),
                    Some("spark://10.77.0.12:30077"),
                    false
                ),
                (
                    Some("10.77.0.12:31080"),
                    Some("http://10.77.0.12:31080/"),
                    true
                ),
                (Some("10.77.0.12:30066"), None, false),
            ]
        );
        let t = table(&rows);
        assert!(
            t.starts_with("ROLE    MEMBER          SERVICE       ADDRESS"),
            "{t}"
        );
        assert!(t.contains("http://10.77.0.12:31080/  *"), "{t}");
    }

    #[test]
    fn cluster_ip_services_and_missing_members() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "spark-master-0"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 8080}]}
        }))
        .unwrap();
        let mut r = role();
        r.endpoints[1].path = Some("json/".into());
        let rows_ = rows(
            &r,
            "apps",
            &HashMap::from([("spark-master-0".to_string(), svc)]),
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(rows_[0].address, None, "port 7077 not on the Service");
        assert_eq!(
            rows_[1].address.as_deref(),
            Some("spark-master-0.apps.svc:8080")
        );
        assert_eq!(
            rows_[1].url.as_deref(),
            Some("http://spark-master-0.apps.svc:8080/json/")
        );
        assert!(rows_[1].internal);
    }
}
