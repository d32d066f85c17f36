//! A busybox app in the shape the catalog renders: master (exactly 1) and worker (1..=4,
//! depends on master, a `data` volume per member).

use director_boot::catalog::{
    EndpointSpec, Hooks, LABEL_APP, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ORDINAL, LABEL_ROLE,
    RenderedApp, RenderedRole,
};
use serde_json::{Value, json};

fn labels(instance: &str, role: Option<&str>) -> Value {
    let mut l =
        json!({LABEL_MANAGED_BY: "director-boot", LABEL_APP: "busybox", LABEL_INSTANCE: instance});
    if let Some(r) = role {
        l[LABEL_ROLE] = json!(r);
    }
    l
}

fn role(
    instance: &str,
    ns: &str,
    id: &str,
    members: u32,
    max: Option<u32>,
    deps: &[&str],
    storage: bool,
) -> RenderedRole {
    let sts_name = format!("{instance}-{id}");
    let mut sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": sts_name, "namespace": ns, "labels": labels(instance, Some(id))},
        "spec": {
            "replicas": members, "serviceName": format!("{instance}-hs"),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {LABEL_INSTANCE: instance, LABEL_ROLE: id}},
            "template": {
                "metadata": {"labels": labels(instance, Some(id))},
                "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:1.36",
                    "command": ["sh", "-c", "httpd -f -p 8080"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}}}]}
            }
        }
    });
    if storage {
        sts["spec"]["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "data", "labels": labels(instance, Some(id))},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]);
        sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
    }
    let member_services = (0..members)
        .map(|o| {
            let mut l = labels(instance, Some(id));
            l[LABEL_ORDINAL] = json!(o.to_string());
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{sts_name}-{o}"), "namespace": ns, "labels": l},
                "spec": {"type": "NodePort", "publishNotReadyAddresses": true,
                    "selector": {"statefulset.kubernetes.io/pod-name": format!("{sts_name}-{o}")},
                    "ports": [{"name": "http-ui", "port": 8080, "targetPort": 8080}]}
            })
        })
        .collect();
    RenderedRole {
        id: id.into(),
        members,
        min_members: 1,
        max_members: max,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        statefulset: sts,
        member_services,
        extra: vec![],
        endpoints: vec![EndpointSpec {
            id: "ui".into(),
            port: 8080,
            url_scheme: Some("http".into()),
            path: None,
            dashboard: true,
        }],
        hooks: Hooks::default(),
    }
}

/// The app with `workers` worker members.
pub fn busybox(instance: &str, ns: &str, workers: u32) -> RenderedApp {
    RenderedApp {
        app: "busybox".into(),
        instance: instance.into(),
        namespace: ns.into(),
        cluster_spec_yaml: format!(
            "roles:\n- {{id: master, members: 1}}\n- {{id: worker, members: {workers}}}\n"
        ),
        shared: vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{instance}-meta"), "namespace": ns, "labels": labels(instance, None)},
                "data": {"members": format!("master=1\nworker={workers}\n")}}),
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{instance}-secret"), "namespace": ns, "labels": labels(instance, None)},
                "stringData": {"password": "not-a-real-password"}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{instance}-hs"), "namespace": ns, "labels": labels(instance, None)},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                    "selector": {LABEL_INSTANCE: instance}}}),
        ],
        roles: vec![
            role(instance, ns, "master", 1, Some(1), &[], false),
            role(instance, ns, "worker", workers, Some(4), &["master"], true),
        ],
        usage: None,
        image_help: None,
    }
}
