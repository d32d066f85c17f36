//! From a checked app and cluster spec to Kubernetes objects. Rust computes the facts (names,
//! FQDNs, ports, env, volumes); the object shapes live in tera templates under `catalog/_base/`
//! and an app's own templates; start scripts, hooks and files are templates too.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine;
use serde_json::{Map, Value, json};
use tera::{Context, Tera};

use super::check::{MEMBERSHIP_KEYS, MOUNT, resolve_port};
use super::cluster::{self, Layered};
use super::model::{App, DEFAULT_STORAGE_SIZE, Probe, Role, SecretDecl};
use super::names;
use super::problems::{Index, Problems};
use super::rendered::*;
use super::source::{self, AppFiles};
use super::yaml::At;
use super::{ApiFacts, DOMAIN, Mode};

/// What the rendered Secret carries when its value is not known offline (`catalog validate`).
const PLACEHOLDER: &str = "placeholder-given-at-deploy";

/// Annotation on Secrets saying where the value came from; `generated` ones must be created
/// only once (re-applying would change the value under running members).
pub const ANNOTATION_SECRET_SOURCE: &str = "director-boot.io/secret-source";

pub struct Input<'a> {
    pub files: &'a AppFiles,
    pub app: &'a App,
    pub app_ix: &'a Index,
    pub cluster: &'a Layered,
    pub mode: Mode,
    /// The API server deploy-app talks to, when it is known.
    pub api: Option<&'a ApiFacts>,
}

/// Everything templates may read about the cluster being rendered.
struct Facts {
    ctx: Value,
    instance: String,
    namespace: String,
}

pub fn render(inp: &Input, p: &mut Problems) -> Option<RenderedApp> {
    let app = inp.app;
    let l = inp.cluster;
    let order = dependency_order(app);
    let facts = facts(inp);
    let mut r = Renderer::new(inp, p)?;

    let scripts = r.scripts(&facts, p);
    let secrets = r.secrets(p);

    let base_labels = labels(app, &facts.instance, None);
    let mut shared = Vec::new();
    // The namespace carries the Pod Security level the app declared; the cluster enforces
    // baseline where no label says otherwise. `default` is not relabelled: an app that needs
    // more than baseline gets its own namespace.
    let level = app.pod_security.as_deref().unwrap_or("baseline");
    if facts.namespace != "default" {
        let mut ns_labels = base_labels.clone();
        ns_labels.insert(LABEL_PSA_ENFORCE.into(), level.into());
        ns_labels.insert(LABEL_PSA_ENFORCE_VERSION.into(), "latest".into());
        shared.extend(r.object(
            "namespace.yaml",
            &facts,
            json!({"name": facts.namespace, "labels": ns_labels}),
            p,
        ));
    } else if level != "baseline" && level != "restricted" {
        p.add(
            l.ix.at("namespace"),
            "namespace",
            format!(
                "{} needs Pod Security level {level}, which the `default` namespace does not allow: deploy it into its own namespace (`--namespace {}`)",
                app.name, app.name
            ),
        );
    }
    for (decl, value, origin) in &secrets {
        let data = json!({ decl.key(): base64::engine::general_purpose::STANDARD.encode(value) });
        shared.extend(r.object(
            "secret.yaml",
            &facts,
            json!({
                "name": secret_name(&facts.instance, &decl.id),
                "labels": base_labels,
                "annotations": {ANNOTATION_SECRET_SOURCE: origin},
                "data": data,
            }),
            p,
        ));
    }
    shared.extend(r.object(
        "configmap.yaml",
        &facts,
        json!({
            "name": format!("{}-membership", facts.instance),
            "labels": base_labels,
            "data": membership(&facts),
        }),
        p,
    ));
    shared.extend(r.object(
        "configmap.yaml",
        &facts,
        json!({
            "name": format!("{}-scripts", facts.instance),
            "labels": base_labels,
            "data": scripts,
        }),
        p,
    ));
    let selector = json!({LABEL_APP: app.name, LABEL_INSTANCE: facts.instance});
    shared.extend(r.object(
        "service-headless.yaml",
        &facts,
        json!({
            "name": facts.instance,
            "labels": base_labels,
            "selector": selector,
            "ports": headless_ports(app),
        }),
        p,
    ));
    for (i, t) in app.templates.iter().enumerate() {
        if t.role.is_none() {
            shared.extend(r.extra(&t.file, &facts, None, &format!("templates[{i}]"), p));
        }
    }

    let mut roles = Vec::new();
    for &i in &order {
        let role = &app.roles[i];
        let members = l.members(role);
        let role_labels = labels(app, &facts.instance, Some(&role.id));
        let sts = r.statefulset(i, role, &facts, &role_labels, p);
        let mut member_services = Vec::new();
        if !role.services.is_empty() {
            for n in 0..members {
                let mut svc_labels = role_labels.clone();
                svc_labels.insert(LABEL_ORDINAL.into(), Value::String(n.to_string()));
                let pod = format!("{}-{}-{n}", facts.instance, role.id);
                member_services.extend(r.object(
                    "service-member.yaml",
                    &facts,
                    json!({
                        "name": pod,
                        "labels": svc_labels,
                        "type": l.spec.service_type.as_deref().unwrap_or("NodePort"),
                        "pod": pod,
                        "ports": member_ports(role, l, n),
                    }),
                    p,
                ));
            }
        }
        let mut extra = Vec::new();
        for (t_i, t) in app.templates.iter().enumerate() {
            if t.role.as_deref() == Some(&role.id) {
                extra.extend(r.extra(
                    &t.file,
                    &facts,
                    Some(&role.id),
                    &format!("templates[{t_i}]"),
                    p,
                ));
            }
        }
        let hook = |event: &str| {
            vec![
                "/bin/bash".to_string(),
                format!("{MOUNT}/{}-{event}.sh", role.id),
            ]
        };
        roles.push(RenderedRole {
            id: role.id.clone(),
            members,
            min_members: role.members.min,
            max_members: role.members.max,
            depends_on: role.depends_on.clone(),
            statefulset: sts.unwrap_or(Value::Null),
            member_services,
            extra,
            endpoints: role
                .services
                .iter()
                .map(|s| EndpointSpec {
                    id: s.id.clone(),
                    port: s.port,
                    url_scheme: s.scheme.clone(),
                    path: s.path.clone(),
                    dashboard: s.dashboard,
                })
                .collect(),
            hooks: Hooks {
                configure: role.hooks.configure.as_ref().map(|_| hook("configure")),
                addnodes: role.hooks.addnodes.as_ref().map(|_| hook("addnodes")),
                delnodes: role.hooks.delnodes.as_ref().map(|_| hook("delnodes")),
            },
        });
    }

    let cluster_spec_yaml = match serde_yaml::to_string(&cluster::stored_spec(app, l)) {
        Ok(text) => text,
        Err(e) => {
            p.add(
                l.ix.at(""),
                "",
                format!("cannot be written back as YAML: {e}"),
            );
            String::new()
        }
    };
    let usage = app.usage.as_ref().and_then(|f| r.file(f, &facts, None, p));
    let image_help = app
        .image_help
        .as_ref()
        .and_then(|f| r.file(f, &facts, None, p));
    p.is_empty().then(|| RenderedApp {
        app: app.name.clone(),
        instance: facts.instance.clone(),
        namespace: facts.namespace.clone(),
        cluster_spec_yaml,
        shared,
        roles,
        usage,
        image_help,
    })
}

/// Roles so that each comes after the roles it depends on (file order otherwise); cycles were
/// reported by the checks, and whatever is left of one keeps file order.
pub fn dependency_order(app: &App) -> Vec<usize> {
    let mut done: Vec<usize> = Vec::new();
    let mut placed: HashSet<usize> = HashSet::new();
    while done.len() < app.roles.len() {
        let next = (0..app.roles.len()).find(|i| {
            !placed.contains(i)
                && app.roles[*i].depends_on.iter().all(|d| {
                    app.roles
                        .iter()
                        .position(|r| &r.id == d)
                        .is_none_or(|j| placed.contains(&j) || j == *i)
                })
        });
        let i = next.unwrap_or_else(|| {
            (0..app.roles.len())
                .find(|i| !placed.contains(i))
                .unwrap_or(0)
        });
        placed.insert(i);
        done.push(i);
    }
    done
}

fn facts(inp: &Input) -> Facts {
    let (app, l) = (inp.app, inp.cluster);
    let instance = l.instance(app).to_string();
    let namespace = l.namespace().to_string();
    let mut roles = Map::new();
    for role in &app.roles {
        let members = l.members(role);
        let pods: Vec<String> = (0..members)
            .map(|n| format!("{instance}-{}-{n}", role.id))
            .collect();
        let fqdns: Vec<String> = pods
            .iter()
            .map(|pod| format!("{pod}.{instance}.{namespace}.svc.{DOMAIN}"))
            .collect();
        let ports: Map<String, Value> = role
            .services
            .iter()
            .map(|s| (s.id.clone(), Value::from(s.port)))
            .collect();
        let (cpu, memory_mib) = cluster::sizing(l, role);
        roles.insert(
            role.id.clone(),
            json!({
                "id": role.id,
                "members": members,
                "min": role.members.min,
                "max": role.members.max,
                "pods": pods,
                "fqdns": fqdns,
                "ports": ports,
                "statefulset": format!("{instance}-{}", role.id),
                "cpu": cpu,
                "memory_mib": memory_mib,
            }),
        );
    }
    let cluster = serde_json::to_value(cluster::stored_spec(app, l)).unwrap_or(Value::Null);
    // Offline (`--render`, `catalog validate`) the API server is not known: placeholders.
    let api = inp.api.map_or_else(
        || json!({"server": "https://API-SERVER:6443", "kubeconfig": "$KUBECONFIG"}),
        |a| json!({"server": a.server.trim_end_matches('/'), "kubeconfig": a.kubeconfig}),
    );
    Facts {
        ctx: json!({
            "app": {"name": app.name, "version": app.version, "label": app.label, "image": app.image},
            "instance": instance,
            "namespace": namespace,
            "domain": DOMAIN,
            "headless": instance,
            "subdomain": format!("{instance}.{namespace}.svc.{DOMAIN}"),
            "mount": MOUNT,
            "roles": roles,
            "cluster": cluster,
            "api": api,
        }),
        instance,
        namespace,
    }
}

pub const LABEL_PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const LABEL_PSA_ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

fn labels(app: &App, instance: &str, role: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(LABEL_MANAGED_BY.into(), "director-boot".into());
    m.insert(LABEL_APP.into(), app.name.clone().into());
    m.insert(LABEL_INSTANCE.into(), instance.into());
    if let Some(role) = role {
        m.insert(LABEL_ROLE.into(), role.into());
    }
    m
}

pub fn secret_name(instance: &str, id: &str) -> String {
    format!("{instance}-{id}")
}

fn membership(f: &Facts) -> Value {
    let roles = f.ctx.get("roles").cloned().unwrap_or(Value::Null);
    let mut summary = Map::new();
    let mut env = format!(
        "DB_INSTANCE={}\nDB_NAMESPACE={}\nDB_DOMAIN={DOMAIN}\n",
        f.instance, f.namespace
    );
    let mut ids = Vec::new();
    if let Value::Object(roles) = &roles {
        for (id, r) in roles {
            ids.push(id.clone());
            summary.insert(
                id.clone(),
                json!({"members": r["members"], "fqdns": r["fqdns"], "pods": r["pods"]}),
            );
            let var = id.to_ascii_uppercase().replace('-', "_");
            let fqdns: Vec<&str> = r["fqdns"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            env.push_str(&format!(
                "DB_{var}_MEMBERS={}\nDB_{var}_FQDNS=\"{}\"\n",
                r["members"],
                fqdns.join(" ")
            ));
        }
    }
    env.push_str(&format!("DB_ROLES=\"{}\"\n", ids.join(" ")));
    let json_text = serde_json::to_string_pretty(&json!({
        "app": f.ctx["app"]["name"],
        "instance": f.instance,
        "namespace": f.namespace,
        "domain": DOMAIN,
        "roles": summary,
    }))
    .unwrap_or_default();
    json!({ MEMBERSHIP_KEYS[0]: json_text + "\n", MEMBERSHIP_KEYS[1]: env })
}

/// The headless Service's ports: every role's, once per port number.
fn headless_ports(app: &App) -> Value {
    let mut seen: HashMap<(u16, String), ()> = HashMap::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for role in &app.roles {
        for s in &role.services {
            let protocol = s.protocol.clone().unwrap_or_else(|| "TCP".into());
            if seen.insert((s.port, protocol.clone()), ()).is_some() {
                continue;
            }
            let mut name = s.port_name();
            if !names.insert(name.clone()) {
                name = format!("port-{}", s.port);
                names.insert(name.clone());
            }
            out.push(
                json!({"name": name, "port": s.port, "targetPort": s.port, "protocol": protocol}),
            );
        }
    }
    Value::Array(out)
}

fn member_ports(role: &Role, l: &Layered, ordinal: u32) -> Value {
    let pins = l.spec.roles.get(&role.id).map(|r| &r.node_ports);
    Value::Array(
        role.services
            .iter()
            .map(|s| {
                let node_port = pins
                    .and_then(|p| p.get(&s.id))
                    .map(|p| u32::from(*p) + ordinal);
                json!({
                    "name": s.port_name(),
                    "port": s.port,
                    "targetPort": s.port,
                    "protocol": s.protocol.as_deref().unwrap_or("TCP"),
                    "nodePort": node_port,
                })
            })
            .collect(),
    )
}

fn probe(role: &Role, probe: &Option<Probe>) -> Value {
    let Some(pr) = probe else {
        return Value::Null;
    };
    let mut out = Map::new();
    if let Some(h) = &pr.http_get {
        out.insert(
            "httpGet".into(),
            json!({
                "path": h.path.as_deref().unwrap_or("/"),
                "port": resolve_port(role, &h.port),
                "scheme": h.scheme,
            }),
        );
    }
    if let Some(t) = &pr.tcp_socket {
        out.insert(
            "tcpSocket".into(),
            json!({"port": resolve_port(role, &t.port)}),
        );
    }
    if let Some(cmd) = &pr.exec {
        out.insert("exec".into(), json!({"command": cmd}));
    }
    for (k, v) in [
        ("initialDelaySeconds", pr.initial_delay_seconds),
        ("periodSeconds", pr.period_seconds),
        ("timeoutSeconds", pr.timeout_seconds),
        ("failureThreshold", pr.failure_threshold),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), v.into());
        }
    }
    Value::Object(out)
}

/// `/var/lib/cassandra` -> `var-lib-cassandra`: one subdirectory of the data volume per dir.
fn sub_path(dir: &str) -> String {
    dir.trim_matches('/').replace('/', "-")
}

/// Drop `null` members, so templates can write every field and leave out the unset ones.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune);
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

use crate::engine::render::{chain, new_tera};

struct Renderer<'a> {
    inp: &'a Input<'a>,
    tera: Tera,
    /// Template name (what tera calls it) per app file, for files that loaded.
    loaded: HashMap<String, String>,
}

impl<'a> Renderer<'a> {
    fn new(inp: &'a Input<'a>, p: &mut Problems) -> Option<Self> {
        let mut tera = new_tera();
        let mut ok = true;
        for (name, text) in source::base_templates() {
            let shown = format!("catalog/{}/{name}", source::BASE);
            if let Err(e) = tera.add_raw_template(&shown, &text) {
                p.add(
                    At::file(&shown),
                    "",
                    format!("does not parse: {}", chain(&e)),
                );
                ok = false;
            }
        }
        let mut loaded = HashMap::new();
        let app = inp.app;
        let mut rels: Vec<&str> = Vec::new();
        for role in &app.roles {
            rels.push(&role.start);
            rels.extend(role.hooks.each().into_iter().map(|(_, f)| f));
        }
        rels.extend(app.files.iter().map(String::as_str));
        rels.extend(app.templates.iter().map(|t| t.file.as_str()));
        rels.extend(app.usage.as_deref());
        rels.extend(app.image_help.as_deref());
        for rel in rels {
            if rel.is_empty() || loaded.contains_key(rel) || names::app_file(rel).is_some() {
                continue;
            }
            // Missing or unreadable files were reported by the checks.
            let Ok(Some(text)) = inp.files.read(rel) else {
                continue;
            };
            let shown = inp.files.display(rel);
            match tera.add_raw_template(&shown, &text) {
                Ok(()) => {
                    loaded.insert(rel.to_string(), shown);
                }
                Err(e) => p.add(
                    At::file(&shown),
                    "",
                    format!("does not parse: {}", chain(&e)),
                ),
            }
        }
        ok.then_some(Renderer { inp, tera, loaded })
    }

    fn context(&self, facts: &Facts, role: Option<&str>) -> Context {
        let mut v = facts.ctx.clone();
        if let (Some(role), Value::Object(m)) = (role, &mut v) {
            let r = facts.ctx["roles"][role].clone();
            m.insert("role".into(), r);
        }
        Context::from_value(v).unwrap_or_default()
    }

    /// Render an app file; `None` (reported) when it failed or was never loaded.
    fn file(
        &self,
        rel: &str,
        facts: &Facts,
        role: Option<&str>,
        p: &mut Problems,
    ) -> Option<String> {
        let shown = self.loaded.get(rel)?;
        match self.tera.render(shown, &self.context(facts, role)) {
            Ok(text) => Some(text),
            Err(e) => {
                let during = role
                    .map(|r| format!(" for role \"{r}\""))
                    .unwrap_or_default();
                p.add(
                    At::file(shown),
                    "",
                    format!(
                        "does not render{during}{}: {}",
                        self.counts(facts),
                        chain(&e)
                    ),
                );
                None
            }
        }
    }

    /// The member counts rendered with, for messages.
    fn counts(&self, facts: &Facts) -> String {
        let Some(roles) = facts.ctx["roles"].as_object() else {
            return String::new();
        };
        let parts: Vec<String> = roles
            .iter()
            .map(|(id, r)| format!("{id}={}", r["members"]))
            .collect();
        format!(" (members: {})", parts.join(", "))
    }

    fn scripts(&mut self, facts: &Facts, p: &mut Problems) -> Map<String, Value> {
        let app = self.inp.app;
        let mut out = Map::new();
        for role in &app.roles {
            if let Some(text) = self.file(&role.start, facts, Some(&role.id), p) {
                out.insert(format!("{}.sh", role.id), text.into());
            }
            for (event, file) in role.hooks.each() {
                if let Some(text) = self.file(file, facts, Some(&role.id), p) {
                    out.insert(format!("{}-{event}.sh", role.id), text.into());
                }
            }
        }
        for f in &app.files {
            if let Some(text) = self.file(f, facts, None, p) {
                out.insert(names::base_name(f).to_string(), text.into());
            }
        }
        out
    }

    /// (declaration, value, origin) of every Secret to render.
    fn secrets(&self, p: &mut Problems) -> Vec<(SecretDecl, Vec<u8>, &'static str)> {
        let l = self.inp.cluster;
        let mut out = Vec::new();
        for decl in &self.inp.app.secrets {
            let src = l.spec.secrets.get(&decl.id).cloned().unwrap_or_default();
            if src.existing {
                continue;
            }
            let (value, origin) = if let Some(v) = &src.value {
                (v.as_bytes().to_vec(), "value")
            } else if src.file.is_some() {
                if self.inp.mode != Mode::Deploy {
                    (PLACEHOLDER.as_bytes().to_vec(), "file")
                } else {
                    let Some(path) = l.secret_file(&decl.id) else {
                        continue;
                    };
                    match std::fs::read(&path) {
                        Ok(bytes) => (bytes, "file"),
                        Err(e) => {
                            let f = format!("secrets.{}.file", decl.id);
                            p.add(
                                l.ix.at(&f),
                                f,
                                format!("cannot read {}: {e}", path.display()),
                            );
                            continue;
                        }
                    }
                }
            } else if src.generate || decl.generate {
                if self.inp.mode != Mode::Deploy {
                    (PLACEHOLDER.as_bytes().to_vec(), "generated")
                } else {
                    let mut buf = [0u8; 24];
                    if let Err(e) = getrandom::getrandom(&mut buf) {
                        p.add(
                            l.ix.at("secrets"),
                            format!("secrets.{}", decl.id),
                            format!("cannot generate a value: {e}"),
                        );
                        continue;
                    }
                    (hex::encode(buf).into_bytes(), "generated")
                }
            } else if decl.required && self.inp.mode != Mode::Deploy {
                (PLACEHOLDER.as_bytes().to_vec(), "value")
            } else {
                // Optional and not given: members reference it as optional.
                continue;
            };
            out.push((decl.clone(), value, origin));
        }
        out
    }

    /// One object from a `_base` template with `obj` as the object's facts.
    fn object(&self, template: &str, facts: &Facts, obj: Value, p: &mut Problems) -> Option<Value> {
        let shown = format!("catalog/{}/{template}", source::BASE);
        let mut ctx = self.context(facts, None);
        ctx.insert("obj", &obj);
        let text = match self.tera.render(&shown, &ctx) {
            Ok(t) => t,
            Err(e) => {
                p.add(
                    At::file(&shown),
                    "",
                    format!("does not render: {}", chain(&e)),
                );
                return None;
            }
        };
        match serde_yaml::from_str::<Value>(&text) {
            Ok(mut v) => {
                prune(&mut v);
                Some(v)
            }
            Err(e) => {
                p.add(
                    At::file(&shown),
                    "",
                    format!("renders to invalid YAML: {e}"),
                );
                None
            }
        }
    }

    /// Objects from an app's own template (any number of YAML documents).
    fn extra(
        &self,
        rel: &str,
        facts: &Facts,
        role: Option<&str>,
        field: &str,
        p: &mut Problems,
    ) -> Vec<Value> {
        let Some(text) = self.file(rel, facts, role, p) else {
            return Vec::new();
        };
        let shown = self.inp.files.display(rel);
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut v = match <Value as serde::Deserialize>::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    p.add(
                        At::file(&shown),
                        "",
                        format!("renders to invalid YAML: {e}"),
                    );
                    return out;
                }
            };
            if v.is_null() {
                continue;
            }
            prune(&mut v);
            let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
                p.add(
                    self.inp.app_ix.at(field),
                    field,
                    format!("{shown} renders an object without metadata"),
                );
                continue;
            };
            meta.entry("namespace")
                .or_insert_with(|| facts.namespace.clone().into());
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(labels) = labels {
                for (k, val) in self::labels(self.inp.app, &facts.instance, role) {
                    labels.entry(k).or_insert(val);
                }
            }
            out.push(v);
        }
        out
    }

    fn statefulset(
        &mut self,
        i: usize,
        role: &Role,
        facts: &Facts,
        labels: &Map<String, Value>,
        p: &mut Problems,
    ) -> Option<Value> {
        let (app, l) = (self.inp.app, self.inp.cluster);
        let spec = l.spec.roles.get(&role.id);
        let field = format!("roles[{i}]");
        let image = spec
            .and_then(|s| s.image.clone())
            .or_else(|| role.image.clone())
            .or_else(|| app.image.clone());

        // Env: what director-boot sets, then the app's, the role's and the cluster's (later
        // wins), then secrets. Values are templates.
        let mut env = vec![
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
            json!({"name": "DB_APP", "value": app.name}),
            json!({"name": "DB_INSTANCE", "value": facts.instance}),
            json!({"name": "DB_ROLE", "value": role.id}),
            json!({"name": "DB_NAMESPACE", "value": facts.namespace}),
            json!({"name": "DB_FQDN", "value": format!("$(POD_NAME).{}.{}.svc.{DOMAIN}", facts.instance, facts.namespace)}),
        ];
        let mut vars: BTreeMap<&str, (&str, String)> = BTreeMap::new();
        for (k, v) in &app.env {
            vars.insert(k, (v, format!("env.{k}")));
        }
        for (k, v) in &role.env {
            vars.insert(k, (v, format!("{field}.env.{k}")));
        }
        let cluster_env: Vec<(String, String)> = spec
            .map(|s| s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let ctx = self.context(facts, Some(&role.id));
        let mut rendered_env = Vec::new();
        for (k, (v, f)) in vars {
            match self.tera.render_str(v, &ctx) {
                Ok(text) => rendered_env.push(json!({"name": k, "value": text})),
                Err(e) => p.add(
                    self.inp.app_ix.at(&f),
                    f,
                    format!("does not render: {}", chain(&e)),
                ),
            }
        }
        for (k, v) in cluster_env {
            let f = format!("roles.{}.env.{k}", role.id);
            match self.tera.render_str(&v, &ctx) {
                Ok(text) => {
                    rendered_env.retain(|e| e["name"] != k.as_str());
                    rendered_env.push(json!({"name": k, "value": text}));
                }
                Err(e) => p.add(l.ix.at(&f), f, format!("does not render: {}", chain(&e))),
            }
        }
        env.extend(rendered_env);

        let mut volumes = vec![json!({
            "name": "director-boot",
            "projected": {
                "defaultMode": 0o755,
                "sources": [
                    {"configMap": {"name": format!("{}-scripts", facts.instance)}},
                    {"configMap": {"name": format!("{}-membership", facts.instance)}},
                ],
            },
        })];
        let mut mounts =
            vec![json!({"name": "director-boot", "mountPath": MOUNT, "readOnly": true})];
        for used in &role.secrets {
            let Some(decl) = app.secrets.iter().find(|s| s.id == used.id) else {
                continue;
            };
            let name = secret_name(&facts.instance, &decl.id);
            let optional = (!decl.required && !decl.generate).then_some(true);
            if let Some(var) = &used.env {
                env.push(json!({"name": var, "valueFrom": {"secretKeyRef": {
                    "name": name, "key": decl.key(), "optional": optional}}}));
            }
            if let Some(path) = &used.mount_path {
                let vol = format!("secret-{}", decl.id);
                volumes.push(json!({"name": vol, "secret": {
                    "secretName": name, "defaultMode": 0o400, "optional": optional}}));
                mounts.push(json!({"name": vol, "mountPath": path, "readOnly": true}));
            }
        }
        // persistDirs: one claim per member (the cluster's default StorageClass unless the spec
        // names one), or an emptyDir when the spec asks for it.
        let storage = spec.and_then(|s| s.storage.as_ref());
        let empty_dir = storage.is_some_and(|s| s.empty_dir);
        let mut claims = None;
        if !role.persist_dirs.is_empty() {
            if empty_dir {
                volumes.push(json!({"name": "data", "emptyDir": {}}));
            } else {
                claims = Some(json!([{
                    "metadata": {"name": "data", "labels": labels},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": storage.and_then(|s| s.storage_class_name.as_ref()),
                        "resources": {"requests": {"storage": storage
                            .and_then(|s| s.size.as_deref())
                            .unwrap_or(DEFAULT_STORAGE_SIZE)}},
                    },
                }]));
            }
            for dir in &role.persist_dirs {
                mounts.push(json!({"name": "data", "mountPath": dir, "subPath": sub_path(dir)}));
            }
        }

        let resources = spec.and_then(|s| s.resources.as_ref()).map(|r| {
            let mut m = Map::new();
            if !r.requests.is_empty() {
                m.insert("requests".into(), json!(r.requests));
            }
            if !r.limits.is_empty() {
                m.insert("limits".into(), json!(r.limits));
            }
            Value::Object(m)
        });
        let mut caps: Vec<&str> = app
            .capabilities
            .iter()
            .chain(&role.capabilities)
            .map(String::as_str)
            .collect();
        caps.sort();
        caps.dedup();
        let security = (!caps.is_empty()).then(|| json!({"capabilities": {"add": caps}}));
        let ports: Vec<Value> = role
            .services
            .iter()
            .map(|s| {
                json!({"name": s.port_name(), "containerPort": s.port,
                       "protocol": s.protocol.as_deref().unwrap_or("TCP")})
            })
            .collect();
        let selector = json!({LABEL_INSTANCE: facts.instance, LABEL_ROLE: role.id});

        let obj = json!({
            "name": format!("{}-{}", facts.instance, role.id),
            "labels": labels,
            "selector": selector,
            "members": l.members(role),
            "pod_management_policy": role.pod_management_policy.as_deref().unwrap_or("Parallel"),
            "termination_grace_period_seconds": role.termination_grace_period_seconds,
            "service_account": role
                .service_account
                .as_ref()
                .map(|sa| format!("{}-{sa}", facts.instance)),
            "image": image,
            "command": ["/bin/bash", format!("{MOUNT}/{}.sh", role.id)],
            "env": env,
            "ports": if ports.is_empty() { Value::Null } else { Value::Array(ports) },
            "resources": resources,
            "readiness": probe(role, &role.readiness),
            "liveness": probe(role, &role.liveness),
            "security_context": security,
            "volume_mounts": mounts,
            "volumes": volumes,
            "volume_claim_templates": claims,
        });
        self.object("statefulset.yaml", facts, obj, p)
    }
}
