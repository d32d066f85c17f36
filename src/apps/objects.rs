//! Rendered objects as dynamic Kubernetes objects: find the API resource of any kind through
//! discovery, and send it with server-side apply (optionally as a dry run).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use super::FIELD_MANAGER;
use super::error::{AppsError, api_message, is_not_found};

/// Kind, namespace and name of a rendered object, as the API server sees them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Read kind, apiVersion, name and namespace from a rendered object; namespaced objects
/// without a namespace get `default_ns` later (scope is known only after discovery).
pub fn object_id(obj: &Value, section: &str, index: usize) -> Result<ObjectId, AppsError> {
    let bad = |reason: &str| AppsError::BadObject {
        section: section.to_string(),
        index,
        reason: reason.to_string(),
    };
    let s = |ptr: &str| obj.pointer(ptr).and_then(Value::as_str);
    let api_version = s("/apiVersion").ok_or_else(|| bad("no apiVersion"))?;
    let kind = s("/kind").ok_or_else(|| bad("no kind"))?;
    let name = s("/metadata/name").ok_or_else(|| bad(&format!("{kind} without metadata.name")))?;
    Ok(ObjectId {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: s("/metadata/namespace").map(str::to_string),
        name: name.to_string(),
    })
}

fn gvk(id: &ObjectId) -> GroupVersionKind {
    let (group, version) = match id.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", id.api_version.as_str()),
    };
    GroupVersionKind::gvk(group, version, &id.kind)
}

/// A Secret's `stringData` moved into `data` (base64), as the API server would store it.
/// `stringData` is never stored, so server-side apply cannot own its keys: a key dropped
/// from `stringData` stays in the Secret (kubernetes/kubernetes#108008), and older servers
/// wrote a new resourceVersion on every apply (#118519). Kubernetes' docs advise `data`.
pub fn normalize(obj: &mut Value) {
    if obj.get("apiVersion").and_then(Value::as_str) != Some("v1")
        || obj.get("kind").and_then(Value::as_str) != Some("Secret")
    {
        return;
    }
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !data.is_object() {
        *data = Value::Object(serde_json::Map::new());
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            d.insert(k, Value::String(STANDARD.encode(text)));
        }
    }
}

/// Discovery results per (apiVersion, kind), asked once per run.
pub struct Resolver {
    client: Client,
    cache: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
}

/// One rendered object, bound to its API endpoint.
pub struct Bound {
    pub id: ObjectId,
    pub api: Api<DynamicObject>,
    pub value: Value,
}

impl Resolver {
    pub fn new(client: Client) -> Self {
        Resolver {
            client,
            cache: HashMap::new(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The API resource and scope of `id`'s kind.
    pub async fn resource(
        &mut self,
        id: &ObjectId,
    ) -> Result<(ApiResource, ApiCapabilities), AppsError> {
        let key = (id.api_version.clone(), id.kind.clone());
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let found = discovery::pinned_kind(&self.client, &gvk(id))
            .await
            .map_err(|e| AppsError::UnknownKind {
                object: id.to_string(),
                api_version: id.api_version.clone(),
                kind: id.kind.clone(),
                message: api_message(&e),
            })?;
        self.cache.insert(key, found.clone());
        Ok(found)
    }

    /// Bind a rendered object to its API; namespaced objects default to `default_ns`, and
    /// the namespace is written into the object so apply and the URL agree.
    pub async fn bind(
        &mut self,
        obj: &Value,
        section: &str,
        index: usize,
        default_ns: &str,
    ) -> Result<Bound, AppsError> {
        let mut id = object_id(obj, section, index)?;
        let (ar, caps) = self.resource(&id).await?;
        let mut value = obj.clone();
        normalize(&mut value);
        let api = match caps.scope {
            Scope::Cluster => {
                id.namespace = None;
                Api::all_with(self.client.clone(), &ar)
            }
            Scope::Namespaced => {
                let ns = id
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_ns.to_string());
                if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                }
                id.namespace = Some(ns.clone());
                Api::namespaced_with(self.client.clone(), &ns, &ar)
            }
        };
        Ok(Bound { id, api, value })
    }
}

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

/// An applied object and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub object: String,
    pub change: Change,
}

impl Bound {
    /// Server-side apply as the director-boot field manager, taking over conflicting fields
    /// (the rendered app is the desired state).
    pub async fn apply(&self, dry_run: bool) -> Result<DynamicObject, kube::Error> {
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            pp = pp.dry_run();
        }
        self.api
            .patch(&self.id.name, &pp, &Patch::Apply(&self.value))
            .await
    }

    /// The live object's resourceVersion, None when it does not exist.
    pub async fn live_version(&self) -> Result<Option<String>, AppsError> {
        match self.api.get_opt(&self.id.name).await {
            Ok(o) => Ok(o.and_then(|o| o.resource_version())),
            Err(e) => Err(AppsError::api("read", self.id.to_string(), &e)),
        }
    }

    /// Apply for real and say whether anything changed (an apply that changes nothing keeps
    /// the resourceVersion).
    pub async fn apply_tracked(&self) -> Result<Applied, AppsError> {
        let before = self.live_version().await?;
        let after = self
            .apply(false)
            .await
            .map_err(|e| AppsError::api("apply", self.id.to_string(), &e))?;
        let change = match before {
            None => Change::Created,
            Some(v) if Some(v.as_str()) == after.resource_version().as_deref() => Change::Unchanged,
            Some(_) => Change::Configured,
        };
        Ok(Applied {
            object: self.id.to_string(),
            change,
        })
    }

    /// Delete; Ok(false) when it was already gone.
    pub async fn delete(&self) -> Result<bool, AppsError> {
        match self
            .api
            .delete(&self.id.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(AppsError::api("delete", self.id.to_string(), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_group_versions() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "spark-worker", "namespace": "apps"}});
        let id = object_id(&sts, "role worker", 0).unwrap();
        assert_eq!(id.to_string(), "StatefulSet apps/spark-worker");
        let g = gvk(&id);
        assert_eq!((g.group.as_str(), g.version.as_str()), ("apps", "v1"));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
        let id = object_id(&ns, "shared", 0).unwrap();
        assert_eq!(id.to_string(), "Namespace apps");
        assert_eq!(gvk(&id).group, "");
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
            "data": {"a": "b2xk", "keep": "eQ=="}, "stringData": {"a": "new", "pw": "s3cret"}});
        normalize(&mut s);
        assert_eq!(
            s,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
                "data": {"a": "bmV3", "keep": "eQ==", "pw": "czNjcmV0"}})
        );
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"a": "b"}});
        let before = cm.clone();
        normalize(&mut cm);
        assert_eq!(cm, before);
    }

    #[test]
    fn malformed_objects_are_named_by_position() {
        let e = object_id(
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}),
            "role master",
            2,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rendered object 2 of role master is malformed: Service without metadata.name"
        );
        let e = object_id(&json!({"kind": "Service"}), "shared", 0).unwrap_err();
        assert!(e.to_string().ends_with("no apiVersion"));
    }
}
