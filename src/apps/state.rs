//! The record of a deployed instance, kept in the cluster (a ConfigMap
//! `<instance>-director-boot` in the app's namespace) so `apps list|status|scale|delete` work
//! from any machine: the cluster is the source of truth, not a local file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::AppsError;
use crate::catalog::{
    EndpointSpec, Hooks, LABEL_APP, LABEL_INSTANCE, LABEL_MANAGED_BY, RenderedApp, RenderedRole,
};

/// Marks the state ConfigMap (value [`STATE_VALUE`]).
pub const LABEL_STATE: &str = "director-boot.io/state";
pub const STATE_VALUE: &str = "instance";
pub const MANAGED_BY: &str = "director-boot";

const KEY_APP: &str = "app";
const KEY_SPEC: &str = "cluster-spec.yaml";
const KEY_ROLES: &str = "roles.json";
const KEY_KINDS: &str = "kinds.json";

pub fn configmap_name(instance: &str) -> String {
    format!("{instance}-director-boot")
}

/// What the engine needs of a role after the deploy (no secrets: this is a ConfigMap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub id: String,
    pub members: u32,
    pub min_members: u32,
    pub max_members: Option<u32>,
    pub depends_on: Vec<String>,
    /// Name of the role's StatefulSet.
    pub statefulset: String,
    pub endpoints: Vec<EndpointSpec>,
    pub hooks: Hooks,
}

/// An apiVersion/kind pair the instance created objects of (for `apps delete`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KindRecord {
    pub api_version: String,
    pub kind: String,
}

/// A deployed instance as recorded in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInstance {
    pub instance: String,
    pub namespace: String,
    pub app: String,
    pub cluster_spec_yaml: String,
    pub roles: Vec<RoleRecord>,
    pub kinds: Vec<KindRecord>,
}

impl StoredInstance {
    /// What each role should look like, for the observers.
    pub fn targets(&self) -> Vec<crate::apps::observe::RoleTarget> {
        self.roles
            .iter()
            .map(|r| crate::apps::observe::RoleTarget {
                id: r.id.clone(),
                statefulset: r.statefulset.clone(),
                members: r.members,
            })
            .collect()
    }

    pub fn role(&self, id: &str) -> Result<&RoleRecord, AppsError> {
        self.roles
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppsError::NoRole {
                instance: self.instance.clone(),
                role: id.to_string(),
                roles: self
                    .roles
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Current member count per role.
    pub fn members(&self) -> BTreeMap<String, u32> {
        self.roles
            .iter()
            .map(|r| (r.id.clone(), r.members))
            .collect()
    }
}

fn statefulset_name(role: &RenderedRole) -> String {
    role.statefulset
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default()
}

/// The record of `app` (kinds: every kind it renders).
pub fn record(app: &RenderedApp) -> StoredInstance {
    let roles = app
        .roles
        .iter()
        .map(|r| RoleRecord {
            id: r.id.clone(),
            members: r.members,
            min_members: r.min_members,
            max_members: r.max_members,
            depends_on: r.depends_on.clone(),
            statefulset: statefulset_name(r),
            endpoints: r.endpoints.clone(),
            hooks: r.hooks.clone(),
        })
        .collect();
    let all = app.shared.iter().chain(app.roles.iter().flat_map(|r| {
        std::iter::once(&r.statefulset)
            .chain(r.member_services.iter())
            .chain(r.extra.iter())
    }));
    let mut kinds: Vec<KindRecord> = all
        .filter_map(|o| {
            Some(KindRecord {
                api_version: o.get("apiVersion")?.as_str()?.to_string(),
                kind: o.get("kind")?.as_str()?.to_string(),
            })
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    StoredInstance {
        instance: app.instance.clone(),
        namespace: app.namespace.clone(),
        app: app.app.clone(),
        cluster_spec_yaml: app.cluster_spec_yaml.clone(),
        roles,
        kinds,
    }
}

/// The ConfigMap holding `rec`, as an object for server-side apply.
pub fn configmap(rec: &StoredInstance) -> Result<Value, serde_json::Error> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(&rec.instance),
            "namespace": rec.namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_APP: rec.app,
                LABEL_INSTANCE: rec.instance,
                LABEL_STATE: STATE_VALUE,
            },
        },
        "data": {
            KEY_APP: rec.app,
            KEY_SPEC: rec.cluster_spec_yaml,
            KEY_ROLES: serde_json::to_string_pretty(&rec.roles)?,
            KEY_KINDS: serde_json::to_string_pretty(&rec.kinds)?,
        },
    }))
}

/// Read a state ConfigMap back.
pub fn parse(cm: &ConfigMap) -> Result<StoredInstance, AppsError> {
    let namespace = cm.namespace().unwrap_or_default();
    let instance = cm
        .labels()
        .get(LABEL_INSTANCE)
        .cloned()
        .unwrap_or_else(|| cm.name_any());
    let bad = |reason: String| AppsError::BadState {
        instance: instance.clone(),
        namespace: namespace.clone(),
        configmap: cm.name_any(),
        reason,
    };
    let data = cm.data.clone().unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("key {k} is missing")))
    };
    let roles: Vec<RoleRecord> =
        serde_json::from_str(&get(KEY_ROLES)?).map_err(|e| bad(format!("{KEY_ROLES}: {e}")))?;
    let kinds: Vec<KindRecord> =
        serde_json::from_str(&get(KEY_KINDS)?).map_err(|e| bad(format!("{KEY_KINDS}: {e}")))?;
    Ok(StoredInstance {
        instance: instance.clone(),
        namespace: namespace.clone(),
        app: get(KEY_APP)?,
        cluster_spec_yaml: get(KEY_SPEC)?,
        roles,
        kinds,
    })
}

fn selector(instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("{LABEL_STATE}={STATE_VALUE},{LABEL_INSTANCE}={i}"),
        None => format!("{LABEL_STATE}={STATE_VALUE}"),
    }
}

/// Every recorded instance, in one namespace or all.
pub async fn list(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<StoredInstance>, AppsError> {
    list_matching(client, namespace, None).await
}

async fn list_matching(
    client: &Client,
    namespace: Option<&str>,
    instance: Option<&str>,
) -> Result<Vec<StoredInstance>, AppsError> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let where_ = namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let cms = api
        .list(&ListParams::default().labels(&selector(instance)))
        .await
        .map_err(|e| AppsError::api("list instances in", where_, &e))?;
    let mut out = cms.items.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| (&a.namespace, &a.instance).cmp(&(&b.namespace, &b.instance)));
    Ok(out)
}

/// The instance `name`, in `namespace` or wherever it is (must be one place).
pub async fn find(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
) -> Result<StoredInstance, AppsError> {
    let mut found = list_matching(client, namespace, Some(name)).await?;
    match found.len() {
        0 => Err(AppsError::NoInstance {
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(AppsError::AmbiguousInstance {
            name: name.to_string(),
            namespaces: found
                .iter()
                .map(|f| f.namespace.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::test_fixtures::busybox_app;

    #[test]
    fn record_round_trips_through_the_configmap() {
        let app = busybox_app("demo", "ns1");
        let rec = record(&app);
        assert_eq!(rec.roles.len(), 2);
        assert_eq!(rec.roles[1].statefulset, "demo-worker");
        assert!(rec.kinds.iter().any(|k| k.kind == "StatefulSet"));
        assert!(rec.kinds.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        let cm: ConfigMap = serde_json::from_value(configmap(&rec).unwrap()).unwrap();
        assert_eq!(cm.name_any(), "demo-director-boot");
        assert_eq!(parse(&cm).unwrap(), rec);
        assert_eq!(rec.members()["worker"], 2);
        assert!(
            rec.role("nope")
                .unwrap_err()
                .to_string()
                .contains("roles: master, worker")
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let rec = record(&busybox_app("demo", "ns1"));
        let mut cm: ConfigMap = serde_json::from_value(configmap(&rec).unwrap()).unwrap();
        cm.data.as_mut().unwrap().remove("roles.json");
        let e = parse(&cm).unwrap_err().to_string();
        assert!(e.contains("ConfigMap ns1/demo-director-boot"), "{e}");
        assert!(e.contains("key roles.json is missing"), "{e}");
    }
}
