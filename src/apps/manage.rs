//! `apps list`, `apps status NAME` and `apps delete NAME`, from the instance record in the
//! cluster and the live objects.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::endpoints::{self, Endpoint};
use super::error::{AppsError, is_not_found};
use super::objects::{ObjectId, Resolver};
use super::observe::{RoleSnapshot, ordinal, snapshot};
use super::state;
use super::watch::{WaitPolicy, Watcher, attach_crash_logs};
use crate::catalog::LABEL_INSTANCE;

/// Ready/desired of one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleCount {
    pub role: String,
    pub ready: u32,
    pub members: u32,
}

/// One line of `apps list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSummary {
    pub instance: String,
    pub namespace: String,
    pub app: String,
    pub roles: Vec<RoleCount>,
}

/// Every instance (in `namespace`, or all) with ready/desired per role.
pub async fn list(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<InstanceSummary>, AppsError> {
    let mut out = Vec::new();
    for stored in state::list(client, namespace).await? {
        let snaps = snapshot(client, &stored.namespace, &stored.targets()).await?;
        out.push(InstanceSummary {
            instance: stored.instance.clone(),
            namespace: stored.namespace.clone(),
            app: stored.app.clone(),
            roles: snaps
                .iter()
                .map(|s| RoleCount {
                    role: s.id.clone(),
                    ready: s.ready_count(),
                    members: s.members,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// `apps status NAME`.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub instance: String,
    pub namespace: String,
    pub app: String,
    pub roles: Vec<RoleSnapshot>,
    pub endpoints: Vec<Endpoint>,
}

pub async fn status(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
) -> Result<InstanceStatus, AppsError> {
    let stored = state::find(client, namespace, name).await?;
    let mut roles = snapshot(client, &stored.namespace, &stored.targets()).await?;
    attach_crash_logs(client, &stored.namespace, &mut roles).await;
    let endpoints =
        endpoints::fetch(client, &stored.namespace, &stored.instance, &stored.roles).await?;
    Ok(InstanceStatus {
        instance: stored.instance,
        namespace: stored.namespace,
        app: stored.app,
        roles,
        endpoints,
    })
}

/// What `apps delete` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeleteOutcome {
    pub instance: String,
    pub namespace: String,
    pub deleted: Vec<String>,
    pub pvcs_deleted: Vec<String>,
    pub pvcs_kept: Vec<String>,
    /// Kept on purpose (the namespace: it may hold other things, and deleting it would
    /// take the PVCs with it).
    pub kept: Vec<String>,
}

/// `<template>-<statefulset>-<ordinal>`: a PVC a StatefulSet made.
fn is_claim_of(pvc: &str, templates: &[(String, String)]) -> bool {
    templates.iter().any(|(t, sts)| {
        pvc.strip_prefix(t.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|pod| ordinal(sts, pod))
            .is_some()
    })
}

/// Delete everything labelled with the instance (the kinds it was recorded with), the
/// StatefulSets first and the record last; PVCs only with `delete_data`.
pub async fn delete(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    delete_data: bool,
    policy: WaitPolicy,
) -> Result<DeleteOutcome, AppsError> {
    let stored = state::find(client, namespace, name).await?;
    let ns = stored.namespace.clone();
    let mut out = DeleteOutcome {
        instance: stored.instance.clone(),
        namespace: ns.clone(),
        ..DeleteOutcome::default()
    };
    let selector = format!("{LABEL_INSTANCE}={}", stored.instance);
    let lp = ListParams::default().labels(&selector);

    // PVC templates and pods, read before the StatefulSets go.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut templates = Vec::new();
    for r in &stored.roles {
        if let Some(sts) = sts_api.get_opt(&r.statefulset).await.map_err(|e| {
            AppsError::api("read", format!("StatefulSet {ns}/{}", r.statefulset), &e)
        })? {
            for t in sts
                .spec
                .iter()
                .flat_map(|s| s.volume_claim_templates.iter().flatten())
            {
                templates.push((t.name_any(), r.statefulset.clone()));
            }
        }
    }
    let snaps = snapshot(client, &ns, &stored.targets()).await?;
    let pods: Vec<String> = snaps
        .iter()
        .flat_map(|s| s.members_now.iter().map(|m| m.pod.clone()))
        .collect();

    // Kinds to delete: StatefulSets first (their pods stop), the record ConfigMap last.
    let mut kinds: Vec<(String, String)> = stored
        .kinds
        .iter()
        .filter(|k| k.kind != "Namespace" && k.kind != "PersistentVolumeClaim")
        .map(|k| (k.api_version.clone(), k.kind.clone()))
        .collect();
    kinds.sort_by_key(|(_, k)| k != "StatefulSet");
    let mut resolver = Resolver::new(client.clone());
    let record = state::configmap_name(&stored.instance);
    for (api_version, kind) in &kinds {
        let probe = ObjectId {
            api_version: api_version.clone(),
            kind: kind.clone(),
            namespace: None,
            name: String::new(),
        };
        let (ar, caps) = resolver.resource(&probe).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), &ns, &ar),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let items = api
            .list(&lp)
            .await
            .map_err(|e| AppsError::api("list", format!("{kind} of {}", stored.instance), &e))?;
        for o in items.items {
            let n = o.name_any();
            if kind == "ConfigMap" && n == record {
                continue;
            }
            match api.delete(&n, &DeleteParams::background()).await {
                Ok(_) => out.deleted.push(format!("{kind} {n}")),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(AppsError::api("delete", format!("{kind} {ns}/{n}"), &e)),
            }
        }
    }

    let mut watcher = Watcher::new(client.clone(), &ns, &stored.instance, policy, true);
    watcher.until_gone(&pods).await?;

    // PVCs: the instance's label or a StatefulSet claim name (members removed by an earlier
    // scale-down keep theirs until now).
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let all = pvc_api
        .list(&ListParams::default())
        .await
        .map_err(|e| AppsError::api("list PersistentVolumeClaims in", ns.clone(), &e))?;
    let mut claims = BTreeSet::new();
    for p in all.items {
        let n = p.name_any();
        if p.labels().get(LABEL_INSTANCE) == Some(&stored.instance) || is_claim_of(&n, &templates) {
            claims.insert(n);
        }
    }
    for n in claims {
        if delete_data {
            match pvc_api.delete(&n, &DeleteParams::background()).await {
                Ok(_) => out.pvcs_deleted.push(n),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(AppsError::api(
                        "delete",
                        format!("PersistentVolumeClaim {ns}/{n}"),
                        &e,
                    ));
                }
            }
        } else {
            out.pvcs_kept.push(n);
        }
    }
    if stored.kinds.iter().any(|k| k.kind == "Namespace") {
        out.kept.push(format!("Namespace {ns}"));
    }
    let cm_api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    match cm_api.delete(&record, &DeleteParams::background()).await {
        Ok(_) => out.deleted.push(format!("ConfigMap {record}")),
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(AppsError::api(
                "delete",
                format!("ConfigMap {ns}/{record}"),
                &e,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_of_a_statefulset() {
        let t = vec![("data".to_string(), "cassandra-seed".to_string())];
        assert!(is_claim_of("data-cassandra-seed-0", &t));
        assert!(is_claim_of("data-cassandra-seed-11", &t));
        assert!(!is_claim_of("data-cassandra-seedx-0", &t));
        assert!(!is_claim_of("logs-cassandra-seed-0", &t));
        assert!(!is_claim_of("data-cassandra-seed-", &t));
    }
}
