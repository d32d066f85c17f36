//! A catalog app rendered for one cluster: the contract between the catalog (format, validation,
//! rendering; `src/catalog`) and the apps engine (apply, watch, scale, delete; `src/apps`).
//! Objects are plain JSON values so the catalog's tera templates stay data; the engine sends
//! them with server-side apply.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Labels every rendered object carries.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by"; // value "director-boot"
pub const LABEL_APP: &str = "director-boot.io/app"; // catalog app id, e.g. "spark"
pub const LABEL_INSTANCE: &str = "director-boot.io/instance"; // instance name, e.g. "spark"
pub const LABEL_ROLE: &str = "director-boot.io/role"; // role id, e.g. "worker"
pub const LABEL_ORDINAL: &str = "director-boot.io/ordinal"; // on member Services only

/// One app instance rendered into Kubernetes objects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RenderedApp {
    /// Catalog app id, e.g. `spark`.
    pub app: String,
    /// Instance name (default: the app id); prefix of every object name.
    pub instance: String,
    pub namespace: String,
    /// The cluster spec this was rendered from (after `--cluster FILE` and `--set`), as YAML
    /// text; the engine stores it so `apps status|scale` can re-render with new member counts.
    pub cluster_spec_yaml: String,
    /// Objects shared by all roles, applied first, in this order: Namespace, Secrets,
    /// ConfigMaps (membership FQDNs per role, start scripts, hooks), the headless Service.
    pub shared: Vec<Value>,
    /// Roles in `dependsOn` order (every role after the roles it depends on).
    pub roles: Vec<RenderedRole>,
    /// The app's `usage` template rendered: what to do with it, printed after a deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// The app's `imageHelp` template rendered: how to get its image, shown when the image is
    /// missing on the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_help: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RenderedRole {
    pub id: String,
    pub members: u32,
    pub min_members: u32,
    /// None = no upper bound.
    pub max_members: Option<u32>,
    /// Roles that must be Ready before this one is applied.
    pub depends_on: Vec<String>,
    /// The role's StatefulSet, named `<instance>-<role>`, `spec.replicas` = members,
    /// `serviceName` = the headless Service, one container named `app`, a PVC template for
    /// `persistDirs` unless the spec's storage is an emptyDir.
    pub statefulset: Value,
    /// One Service per member, index = ordinal, named `<instance>-<role>-<ordinal>`, selecting
    /// `statefulset.kubernetes.io/pod-name: <instance>-<role>-<ordinal>`.
    pub member_services: Vec<Value>,
    /// Any other per-role objects (e.g. a PodDisruptionBudget).
    pub extra: Vec<Value>,
    /// The role's service ports, for the endpoints table.
    pub endpoints: Vec<EndpointSpec>,
    /// Membership hooks run in the `app` container of members (argv).
    pub hooks: Hooks,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hooks {
    /// Run once in each new member when it is Ready.
    pub configure: Option<Vec<String>>,
    /// Run in every surviving member after members were added; the added members' FQDNs are
    /// in the environment variable `DB_NODES` (comma-separated) and the role in `DB_ROLE`.
    pub addnodes: Option<Vec<String>>,
    /// Run in every surviving member BEFORE members are removed (e.g. `nodetool decommission`
    /// is run by the leaving member itself via `delnodes` with DB_SELF=1); same environment.
    pub delnodes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointSpec {
    /// Service id, e.g. `master-ui`.
    pub id: String,
    pub port: u16,
    /// `http`, `https`, `spark`, ... (None for plain TCP).
    pub url_scheme: Option<String>,
    /// URL path, e.g. `/json/`.
    pub path: Option<String>,
    pub dashboard: bool,
}
