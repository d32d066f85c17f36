//! A small busybox app built by hand in the shape the catalog renders (unit tests only; the
//! API-server test has its own copy, since integration tests cannot see cfg(test) items).

use serde_json::{Value, json};

use crate::catalog::{
    EndpointSpec, Hooks, LABEL_APP, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ORDINAL, LABEL_ROLE,
    RenderedApp, RenderedRole,
};

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
) -> RenderedRole {
    let sts_name = format!("{instance}-{id}");
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": sts_name, "namespace": ns, "labels": labels(instance, Some(id))},
        "spec": {
            "replicas": members, "serviceName": format!("{instance}-hs"),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {LABEL_INSTANCE: instance, LABEL_ROLE: id}},
            "template": {
                "metadata": {"labels": labels(instance, Some(id))},
                "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep 3600"], "ports": [{"containerPort": 8080}]}]}
            }
        }
    });
    let member_services = (0..members)
        .map(|o| {
            let mut l = labels(instance, Some(id));
            l[LABEL_ORDINAL] = json!(o.to_string());
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{sts_name}-{o}"), "namespace": ns, "labels": l},
                "spec": {"type": "NodePort",
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

/// master (exactly 1) and worker (2 of 1..=4, after master).
pub fn busybox_app(instance: &str, ns: &str) -> RenderedApp {
    RenderedApp {
        app: "busybox".into(),
        instance: instance.into(),
        namespace: ns.into(),
        cluster_spec_yaml: "roles:\n- {id: master, members: 1}\n- {id: worker, members: 2}\n"
            .into(),
        shared: vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{instance}-meta"), "namespace": ns, "labels": labels(instance, None)},
                "data": {"members": "master=1\nworker=2\n"}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("{instance}-hs"), "namespace": ns, "labels": labels(instance, None)},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                    "selector": {LABEL_INSTANCE: instance}}}),
        ],
        roles: vec![
            role(instance, ns, "master", 1, Some(1), &[]),
            role(instance, ns, "worker", 2, Some(4), &["master"]),
        ],
        usage: None,
        image_help: None,
    }
}
