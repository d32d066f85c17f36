//! The two documents of a catalog entry, as schema (what may be written) and as types (what
//! the checks and the renderer read): `app.yaml`, the app itself, and `cluster.yaml`, the
//! default cluster spec a user overrides with `--cluster FILE` and `--set`.
//!
//! Every typed field has a default: the schema check has already reported anything missing or
//! ill-typed, and the semantic checks still run on the rest so one run reports everything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::schema::{Field, Shape, opt, req};

pub const PORT: Shape = Shape::Int {
    min: 1,
    max: 65535,
    what: "a port number in 1..=65535",
};
const MEMBERS: Shape = Shape::Int {
    min: 0,
    max: 10_000,
    what: "a member count in 0..=10000",
};
const SECONDS: Shape = Shape::Int {
    min: 0,
    max: 3600,
    what: "seconds in 0..=3600",
};
const POSITIVE_SECONDS: Shape = Shape::Int {
    min: 1,
    max: 3600,
    what: "seconds in 1..=3600",
};
const THRESHOLD: Shape = Shape::Int {
    min: 1,
    max: 1000,
    what: "a count in 1..=1000",
};
pub const NODE_PORT: Shape = Shape::Int {
    min: 30000,
    max: 32767,
    what: "a NodePort in 30000..=32767",
};
const STRINGS: Shape = Shape::List(&Shape::Str);
const STRING_MAP: Shape = Shape::Dict(&Shape::Str);

const SERVICE: Shape = Shape::Object(&[
    req("id", &Shape::Str),
    opt("label", &Shape::Str),
    req("port", &PORT),
    opt("protocol", &Shape::OneOf(&["TCP", "UDP"])),
    opt("scheme", &Shape::Str),
    opt("path", &Shape::Str),
    opt("dashboard", &Shape::Bool),
]);

const PROBE: Shape = Shape::Object(&[
    opt(
        "httpGet",
        &Shape::Object(&[
            opt("path", &Shape::Str),
            req("port", &Shape::Str),
            opt("scheme", &Shape::OneOf(&["HTTP", "HTTPS"])),
        ]),
    ),
    opt("tcpSocket", &Shape::Object(&[req("port", &Shape::Str)])),
    opt("exec", &STRINGS),
    opt("initialDelaySeconds", &SECONDS),
    opt("periodSeconds", &POSITIVE_SECONDS),
    opt("timeoutSeconds", &POSITIVE_SECONDS),
    opt("failureThreshold", &THRESHOLD),
]);

const ROLE: Shape = Shape::Object(&[
    req("id", &Shape::Str),
    opt("label", &Shape::Str),
    opt("image", &Shape::Str),
    req(
        "members",
        &Shape::Object(&[req("min", &MEMBERS), opt("max", &MEMBERS)]),
    ),
    opt("dependsOn", &STRINGS),
    opt("services", &Shape::List(&SERVICE)),
    req("start", &Shape::Str),
    opt(
        "hooks",
        &Shape::Object(&[
            opt("configure", &Shape::Str),
            opt("addnodes", &Shape::Str),
            opt("delnodes", &Shape::Str),
        ]),
    ),
    opt("readiness", &PROBE),
    opt("liveness", &PROBE),
    opt("persistDirs", &STRINGS),
    opt("env", &STRING_MAP),
    opt("capabilities", &STRINGS),
    opt(
        "secrets",
        &Shape::List(&Shape::Object(&[
            req("id", &Shape::Str),
            opt("env", &Shape::Str),
            opt("mountPath", &Shape::Str),
        ])),
    ),
    opt(
        "podManagementPolicy",
        &Shape::OneOf(&["Parallel", "OrderedReady"]),
    ),
    opt("terminationGracePeriodSeconds", &SECONDS),
    opt("serviceAccount", &Shape::Str),
]);

pub static APP: Shape = Shape::Object(&[
    req("name", &Shape::Str),
    opt("label", &Shape::Str),
    opt("version", &Shape::Str),
    opt("description", &Shape::Str),
    opt("image", &Shape::Str),
    opt("env", &STRING_MAP),
    opt("capabilities", &STRINGS),
    opt(
        "podSecurity",
        &Shape::OneOf(&["privileged", "baseline", "restricted"]),
    ),
    opt(
        "license",
        &Shape::Object(&[
            req("name", &Shape::Str),
            opt("url", &Shape::Str),
            opt("mustAccept", &Shape::Bool),
        ]),
    ),
    opt(
        "secrets",
        &Shape::List(&Shape::Object(&[
            req("id", &Shape::Str),
            opt("description", &Shape::Str),
            opt("key", &Shape::Str),
            opt("required", &Shape::Bool),
            opt("generate", &Shape::Bool),
        ])),
    ),
    opt("files", &STRINGS),
    opt(
        "templates",
        &Shape::List(&Shape::Object(&[
            req("file", &Shape::Str),
            opt("role", &Shape::Str),
        ])),
    ),
    opt("usage", &Shape::Str),
    opt("imageHelp", &Shape::Str),
    req("roles", &Shape::List(&ROLE)),
]);

const ROLE_SPEC_FIELDS: &[Field] = &[
    opt("members", &MEMBERS),
    opt("image", &Shape::Str),
    opt(
        "resources",
        &Shape::Object(&[opt("requests", &STRING_MAP), opt("limits", &STRING_MAP)]),
    ),
    opt(
        "storage",
        &Shape::Object(&[
            opt("size", &Shape::Str),
            opt("storageClassName", &Shape::Str),
            opt("emptyDir", &Shape::Bool),
        ]),
    ),
    opt("nodePorts", &Shape::Dict(&NODE_PORT)),
    opt("env", &STRING_MAP),
];

/// The fields a role takes in a cluster spec (also what `--set <role>.<field>` may name).
pub const ROLE_SPEC: Shape = Shape::Object(ROLE_SPEC_FIELDS);

pub const SECRET_SOURCE_FIELDS: &[Field] = &[
    opt("value", &Shape::Str),
    opt("file", &Shape::Str),
    opt("generate", &Shape::Bool),
    opt("existing", &Shape::Bool),
];

pub const CLUSTER_FIELDS: &[Field] = &[
    opt("instance", &Shape::Str),
    opt("namespace", &Shape::Str),
    opt(
        "serviceType",
        &Shape::OneOf(&["NodePort", "ClusterIP", "LoadBalancer"]),
    ),
    opt("acceptLicense", &Shape::Bool),
    opt("roles", &Shape::Dict(&ROLE_SPEC)),
    opt(
        "secrets",
        &Shape::Dict(&Shape::Object(SECRET_SOURCE_FIELDS)),
    ),
];

pub static CLUSTER: Shape = Shape::Object(CLUSTER_FIELDS);

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct App {
    pub name: String,
    pub label: String,
    pub version: String,
    pub description: String,
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    /// The Pod Security level the app's pods need (`podSecurity`); `None` = baseline, the
    /// cluster's default.
    pub pod_security: Option<String>,
    pub license: Option<License>,
    pub secrets: Vec<SecretDecl>,
    pub files: Vec<String>,
    pub templates: Vec<TemplateDecl>,
    /// A template printed after a deploy: how to use the app (`usage`).
    pub usage: Option<String>,
    /// A template printed when the app's image is missing on the nodes: how to get or build
    /// it (`imageHelp`).
    pub image_help: Option<String>,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct License {
    pub name: String,
    pub url: Option<String>,
    pub must_accept: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretDecl {
    pub id: String,
    pub description: String,
    /// The key inside the Secret (the file name when mounted); default `value`.
    pub key: Option<String>,
    pub required: bool,
    pub generate: bool,
}

impl SecretDecl {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("value")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TemplateDecl {
    pub file: String,
    pub role: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Role {
    pub id: String,
    pub label: String,
    pub image: Option<String>,
    pub members: Cardinality,
    pub depends_on: Vec<String>,
    pub services: Vec<Service>,
    pub start: String,
    pub hooks: HookFiles,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    pub persist_dirs: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub secrets: Vec<SecretUse>,
    pub pod_management_policy: Option<String>,
    pub termination_grace_period_seconds: Option<u32>,
    /// The members' ServiceAccount `<instance>-<serviceAccount>` (an object of the app's
    /// `templates`); none = the namespace's `default`.
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Cardinality {
    pub min: u32,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Service {
    pub id: String,
    pub label: String,
    pub port: u16,
    pub protocol: Option<String>,
    pub scheme: Option<String>,
    pub path: Option<String>,
    pub dashboard: bool,
}

impl Service {
    /// The Kubernetes port name: `<scheme>-<id>`, or `tcp-<id>` without a scheme.
    pub fn port_name(&self) -> String {
        format!("{}-{}", self.scheme.as_deref().unwrap_or("tcp"), self.id)
    }

    pub fn is_http(&self) -> bool {
        matches!(self.scheme.as_deref(), Some("http" | "https"))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HookFiles {
    pub configure: Option<String>,
    pub addnodes: Option<String>,
    pub delnodes: Option<String>,
}

impl HookFiles {
    /// (event, file) for every hook given.
    pub fn each(&self) -> Vec<(&'static str, &str)> {
        [
            ("configure", &self.configure),
            ("addnodes", &self.addnodes),
            ("delnodes", &self.delnodes),
        ]
        .into_iter()
        .filter_map(|(e, f)| f.as_deref().map(|f| (e, f)))
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Vec<String>>,
    pub initial_delay_seconds: Option<u32>,
    pub period_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub failure_threshold: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HttpGet {
    pub path: Option<String>,
    /// A port number or the id of one of the role's services.
    pub port: String,
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct TcpSocket {
    pub port: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretUse {
    pub id: String,
    pub env: Option<String>,
    pub mount_path: Option<String>,
}

/// A cluster spec: how many members of each role and what they get.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub accept_license: bool,
    pub roles: BTreeMap<String, RoleSpec>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RoleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_ports: BTreeMap<String, u16>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Resources {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Storage {
    /// The claim's size; default [`DEFAULT_STORAGE_SIZE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The claim's StorageClass; default: the cluster's default class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `persistDirs` in an emptyDir (gone with the pod) instead of a claim.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_dir: bool,
}

/// The size of a member's claim for `persistDirs` when the cluster spec names none.
pub const DEFAULT_STORAGE_SIZE: &str = "1Gi";

/// Where a Secret's value comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SecretSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,
    /// The Secret is already in the cluster: reference it, render nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
}
