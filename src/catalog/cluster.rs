//! The cluster spec: the app's default (`cluster.yaml`), then the user's `--cluster FILE`, then
//! each `--set` (and `--namespace`/`--instance`), merged node by node so every value keeps its
//! origin and a bad value is reported against whatever set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::check::{self, MAX_STATEFULSET_NAME};
use super::model::{self, App, ClusterSpec, Role};
use super::names::{self, suggest};
use super::problems::{Index, Problems};
use super::quantity;
use super::schema;
use super::source::AppFiles;
use super::yaml::{self, At, Source, YKind, YNode};
use super::{ClusterInput, Mode, Overrides};

/// The default cluster spec's file name in an app directory.
pub const DEFAULT_SPEC: &str = "cluster.yaml";

/// Settings a `--set` may name at the top level (besides roles and `secrets.<id>`).
const SETTINGS: [&str; 4] = ["instance", "namespace", "serviceType", "acceptLicense"];

/// Namespaces an app must not be put in.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Resource names a role's resources may use without a vendor prefix.
const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

#[derive(Debug, Clone)]
pub struct Layered {
    pub spec: ClusterSpec,
    pub ix: Index,
}

impl Layered {
    /// Members of a role: the spec's count, else the role's minimum.
    pub fn members(&self, role: &Role) -> u32 {
        self.spec
            .roles
            .get(&role.id)
            .and_then(|r| r.members)
            .unwrap_or(role.members.min)
    }

    pub fn instance<'a>(&'a self, app: &'a App) -> &'a str {
        self.spec.instance.as_deref().unwrap_or(&app.name)
    }

    pub fn namespace(&self) -> &str {
        self.spec.namespace.as_deref().unwrap_or("default")
    }

    /// Where a secret's `file:` is read from: relative to the file that named it, or to the
    /// current directory for `--set`.
    pub fn secret_file(&self, id: &str) -> Option<PathBuf> {
        let file = self.spec.secrets.get(id)?.file.as_ref()?;
        let at = self.ix.at(&format!("secrets.{id}.file"));
        Some(match &*at.source {
            Source::File(from) => Path::new(from)
                .parent()
                .map(|d| d.join(file))
                .unwrap_or_else(|| PathBuf::from(file)),
            Source::Arg(_) => PathBuf::from(file),
        })
    }
}

/// Merge the layers and check their shape; `None` when the result is unusable.
pub fn layer(files: &AppFiles, app: &App, ov: &Overrides, p: &mut Problems) -> Option<Layered> {
    let default_display = files.display(DEFAULT_SPEC);
    let mut root = match files.read(DEFAULT_SPEC) {
        Ok(Some(text)) => parse_doc(&text, Source::File(default_display.clone()), p)?,
        Ok(None) => None,
        Err(e) => {
            p.add(
                At::file(&default_display),
                "",
                format!("cannot read it: {e}"),
            );
            return None;
        }
    }
    .unwrap_or_else(|| YNode {
        at: At::file(&default_display),
        kind: YKind::Map(Vec::new()),
    });

    if let Some(input) = &ov.cluster {
        let (name, text) = match input {
            ClusterInput::File(path) => {
                let name = path.display().to_string();
                match std::fs::read_to_string(path) {
                    Ok(text) => (name, text),
                    Err(e) => {
                        p.add(At::file(&name), "", format!("cannot read it: {e}"));
                        return None;
                    }
                }
            }
            ClusterInput::Text { name, text } => (name.clone(), text.clone()),
        };
        if let Some(doc) = parse_doc(&text, Source::File(name), p)? {
            root = merge_layer(root, doc);
        }
    }

    let mut sets: Vec<(String, String)> = ov
        .sets
        .iter()
        .map(|s| (format!("--set {}", mask(s)), s.clone()))
        .collect();
    if let Some(ns) = &ov.namespace {
        sets.push((format!("--namespace {ns}"), format!("namespace={ns}")));
    }
    if let Some(inst) = &ov.instance {
        sets.push((format!("--instance {inst}"), format!("instance={inst}")));
    }
    let mut sets_ok = true;
    for (shown, set) in &sets {
        let at = At::arg(shown);
        match set_path(set, app) {
            Err(message) => {
                p.add(at, "", message);
                sets_ok = false;
            }
            Ok((path, value)) => match yaml::set_value(value, &at) {
                Err(message) => {
                    p.add(at, "", message);
                    sets_ok = false;
                }
                Ok(node) => root = merge_layer(root, yaml::nest(&path, node, &at)),
            },
        }
    }

    let mut ix = Index::new(root.at.clone());
    let value = schema::check(&root, &model::CLUSTER, "", &mut ix, p)?;
    let spec: ClusterSpec = match serde_json::from_value(value) {
        Ok(spec) => spec,
        Err(e) => {
            p.add(root.at.clone(), "", format!("cannot be read: {e}"));
            return None;
        }
    };
    sets_ok.then_some(Layered { spec, ix })
}

/// `over` laid over `base`, except that a secret's source is replaced whole: a stored
/// `existing: true` must not combine with the default's `generate: true`.
fn merge_layer(base: YNode, over: YNode) -> YNode {
    let mut base = base;
    let given: Vec<String> = match over.kind_map("secrets") {
        Some(entries) => entries
            .iter()
            .filter_map(|(k, _)| k.text().map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    if !given.is_empty()
        && let YKind::Map(entries) = &mut base.kind
    {
        for (k, v) in entries.iter_mut() {
            if k.text() == Some("secrets") {
                let mut secrets = v.clone();
                for id in &given {
                    secrets = yaml::without(secrets, id);
                }
                *v = secrets;
            }
        }
    }
    yaml::merge(base, over)
}

fn parse_doc(text: &str, source: Source, p: &mut Problems) -> Option<Option<YNode>> {
    match yaml::parse(text, source) {
        Ok(doc) => Some(doc),
        Err((at, message)) => {
            p.add(at, "", message);
            None
        }
    }
}

/// A secret's value must not show up in messages.
fn mask(set: &str) -> String {
    match set.split_once('=') {
        Some((path, _)) if path.starts_with("secrets.") && !path.ends_with(".file") => {
            format!("{path}=<hidden>")
        }
        _ => set.to_string(),
    }
}

/// `worker.members=3` -> (`[roles, worker, members]`, `3`), or why the path names nothing.
fn set_path<'s>(set: &'s str, app: &App) -> Result<(Vec<String>, &'s str), String> {
    let Some((path, value)) = set.split_once('=') else {
        return Err("expected PATH=VALUE, like worker.members=3".into());
    };
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{path}` has an empty component"));
    }
    let roles: Vec<&str> = app.roles.iter().map(|r| r.id.as_str()).collect();
    let first = parts[0].as_str();
    if first == "secrets" {
        if parts.len() < 2 {
            return Err("name the secret: secrets.<id>=VALUE or secrets.<id>.file=PATH".into());
        }
        if parts.len() == 2 {
            parts.push("value".into());
        }
        return Ok((parts, value));
    }
    if SETTINGS.contains(&first) && parts.len() == 1 {
        return Ok((parts, value));
    }
    if first == "roles" && parts.len() > 1 {
        parts.remove(0);
    }
    let role = parts[0].as_str();
    if roles.contains(&role) {
        if parts.len() == 1 {
            return Err(format!(
                "name a field of role \"{role}\", like {role}.members=N"
            ));
        }
        parts.insert(0, "roles".into());
        return Ok((parts, value));
    }
    if parts.len() == 1 {
        let hint = suggest(role, SETTINGS.iter().copied().chain(roles.iter().copied()))
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        return Err(format!(
            "no setting \"{role}\" (settings: {}; roles take <role>.<field>{hint})",
            SETTINGS.join(", ")
        ));
    }
    let hint = suggest(role, roles.iter().copied())
        .map(|s| format!("; did you mean \"{s}\"?"))
        .unwrap_or_default();
    Err(format!(
        "no role \"{role}\" (roles: {}{hint})",
        roles.join(", ")
    ))
}

/// Checks of the merged spec against the app.
pub fn check_cluster(app: &App, app_ix: &Index, l: &Layered, mode: Mode, p: &mut Problems) {
    let ix = &l.ix;
    let spec = &l.spec;
    let roles: Vec<&str> = app.roles.iter().map(|r| r.id.as_str()).collect();

    for id in spec.roles.keys() {
        if !roles.contains(&id.as_str()) {
            let field = format!("roles.{id}");
            let hint = suggest(id, roles.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            p.add(
                ix.key_at(&field),
                field,
                format!("no role \"{id}\" (roles: {}{hint})", roles.join(", ")),
            );
        }
    }

    let instance = l.instance(app);
    if let Some(why) = names::dns1035(instance) {
        p.add(
            ix.at("instance"),
            "instance",
            format!("`{instance}` {why} (an instance name is a DNS label)"),
        );
    }
    let ns = l.namespace();
    if let Some(why) = names::dns1123(ns) {
        p.add(
            ix.at("namespace"),
            "namespace",
            format!("`{ns}` {why} (a namespace is a DNS label)"),
        );
    } else if SYSTEM_NAMESPACES.contains(&ns) {
        p.add(
            ix.at("namespace"),
            "namespace",
            format!("`{ns}` belongs to Kubernetes itself: pick another namespace"),
        );
    }

    let service_type = spec.service_type.as_deref().unwrap_or("NodePort");
    let mut pinned: Vec<(u16, u16, String)> = Vec::new();
    for (i, role) in app.roles.iter().enumerate() {
        if role.id.is_empty() {
            continue;
        }
        let base = format!("roles.{}", role.id);
        let members = l.members(role);
        let mf = format!("{base}.members");
        let (min, max) = (role.members.min, role.members.max);
        if members < min {
            let declared = app_ix.at(&format!("roles[{i}].members.min"));
            p.add(
                ix.at(&mf),
                &mf,
                format!(
                    "{members} is below the role's minimum of {min} (members.min at {declared})"
                ),
            );
        } else if let Some(max) = max
            && members > max
        {
            let declared = app_ix.at(&format!("roles[{i}].members.max"));
            p.add(
                ix.at(&mf),
                &mf,
                format!(
                    "{members} is above the role's maximum of {max} (members.max at {declared})"
                ),
            );
        }
        if names::dns1035(instance).is_none() {
            let sts = format!("{instance}-{}", role.id);
            let pod = format!("{sts}-{}", members.max(1) - 1);
            if sts.len() > MAX_STATEFULSET_NAME || pod.len() > 63 {
                p.add(
                    ix.at("instance"),
                    "instance",
                    format!(
                        "`{instance}` is too long for role \"{}\": `{}` would be {} characters (at most {})",
                        role.id,
                        if sts.len() > MAX_STATEFULSET_NAME { &sts } else { &pod },
                        if sts.len() > MAX_STATEFULSET_NAME { sts.len() } else { pod.len() },
                        if sts.len() > MAX_STATEFULSET_NAME { MAX_STATEFULSET_NAME } else { 63 },
                    ),
                );
            }
        }
        let Some(rs) = spec.roles.get(&role.id) else {
            continue;
        };
        if let Some(image) = &rs.image
            && let Some(why) = names::image_ref(image)
        {
            let f = format!("{base}.image");
            p.add(
                ix.at(&f),
                f,
                format!("`{image}` is not an image reference: {why}"),
            );
        }
        check::env_check(&rs.env, &format!("{base}.env"), ix, p);
        if let Some(res) = &rs.resources {
            resources_check(res, &format!("{base}.resources"), ix, p);
        }
        if let Some(storage) = &rs.storage {
            let f = format!("{base}.storage.size");
            if let Some(size) = &storage.size {
                match quantity::parse(size) {
                    Some(v) if v > 0.0 => {}
                    Some(_) => p.add(ix.at(&f), &f, "must be more than zero"),
                    None => p.add(
                        ix.at(&f),
                        &f,
                        format!("`{size}` is not {}", quantity::EXPECTED),
                    ),
                }
            }
            if storage.empty_dir && (storage.size.is_some() || storage.storage_class_name.is_some())
            {
                let f = format!("{base}.storage.emptyDir");
                p.add(
                    ix.at(&f),
                    f,
                    "an emptyDir has no size or StorageClass: give either `emptyDir: true` or `size`/`storageClassName`",
                );
            }
            if let Some(class) = &storage.storage_class_name
                && let Some(why) = names::dns1123(class)
            {
                let f = format!("{base}.storage.storageClassName");
                p.add(ix.at(&f), f, format!("`{class}` {why}"));
            }
        }
        for (svc, &port) in &rs.node_ports {
            let f = format!("{base}.nodePorts.{svc}");
            if !role.services.iter().any(|s| &s.id == svc) {
                let ids: Vec<&str> = role.services.iter().map(|s| s.id.as_str()).collect();
                let hint = suggest(svc, ids.iter().copied())
                    .map(|s| format!("; did you mean \"{s}\"?"))
                    .unwrap_or_default();
                p.add(
                    ix.key_at(&f),
                    f,
                    format!(
                        "role \"{}\" has no service \"{svc}\" (services: {}{hint})",
                        role.id,
                        ids.join(", ")
                    ),
                );
                continue;
            }
            if service_type == "ClusterIP" {
                p.add(
                    ix.at(&f),
                    f,
                    "a NodePort is pinned but serviceType is ClusterIP",
                );
                continue;
            }
            let last = u32::from(port) + members.max(1) - 1;
            if last > 32767 {
                p.add(
                    ix.at(&f),
                    f,
                    format!(
                        "{port} pins one port per member ({port}..={last} for {members} members), past the NodePort range's end 32767"
                    ),
                );
                continue;
            }
            let last = last as u16;
            if let Some((_, _, other)) = pinned.iter().find(|(a, b, _)| port <= *b && *a <= last) {
                p.add(
                    ix.at(&f),
                    &f,
                    format!("{port}..={last} overlaps the NodePorts pinned by {other}"),
                );
            }
            pinned.push((port, last, f));
        }
    }

    secrets_check(app, l, mode, p);

    if mode == Mode::Deploy
        && let Some(license) = &app.license
        && license.must_accept
        && !spec.accept_license
    {
        let url = license
            .url
            .as_deref()
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        p.add(
            written_or_file(ix, "acceptLicense"),
            "acceptLicense",
            format!(
                "the app is under {}{url}, which must be accepted: read it, then --set acceptLicense=true",
                license.name
            ),
        );
    }
}

/// Where a field was written, or just the spec's first file when it never was (a line there
/// would point at something unrelated).
fn written_or_file(ix: &Index, path: &str) -> At {
    if ix.has(path) {
        return ix.at(path);
    }
    let mut at = ix.at("");
    at.mark = None;
    at
}

fn resources_check(res: &model::Resources, field: &str, ix: &Index, p: &mut Problems) {
    for (kind, map) in [("requests", &res.requests), ("limits", &res.limits)] {
        for (name, value) in map {
            let f = format!("{field}.{kind}.{name}");
            let vendor = name.contains('/') || name.starts_with("hugepages-");
            if !vendor && !RESOURCE_NAMES.contains(&name.as_str()) {
                let hint = suggest(name, RESOURCE_NAMES)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                p.add(
                    ix.key_at(&f),
                    f,
                    format!(
                        "unknown resource `{name}`{hint}: use {} or a vendor/name",
                        RESOURCE_NAMES.join(", ")
                    ),
                );
                continue;
            }
            let Some(v) = quantity::parse(value) else {
                p.add(
                    ix.at(&f),
                    f,
                    format!("`{value}` is not {}", quantity::EXPECTED),
                );
                continue;
            };
            if kind == "requests"
                && let Some(limit) = res.limits.get(name).and_then(|l| quantity::parse(l))
                && v > limit
            {
                p.add(
                    ix.at(&f),
                    f,
                    format!(
                        "request {value} is more than the limit {}",
                        res.limits[name]
                    ),
                );
            }
        }
    }
}

fn secrets_check(app: &App, l: &Layered, mode: Mode, p: &mut Problems) {
    let ix = &l.ix;
    let declared: Vec<&str> = app.secrets.iter().map(|s| s.id.as_str()).collect();
    for (id, src) in &l.spec.secrets {
        let f = format!("secrets.{id}");
        if !declared.contains(&id.as_str()) {
            let hint = suggest(id, declared.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            p.add(
                ix.key_at(&f),
                f,
                format!(
                    "the app declares no secret \"{id}\" (secrets: {}{hint})",
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            );
            continue;
        }
        let given: Vec<&str> = [
            ("value", src.value.is_some()),
            ("file", src.file.is_some()),
            ("generate", src.generate),
            ("existing", src.existing),
        ]
        .into_iter()
        .filter_map(|(n, g)| g.then_some(n))
        .collect();
        if given.len() > 1 {
            p.add(
                ix.at(&f),
                &f,
                format!("give one source, found {}", given.join(" and ")),
            );
        }
        if mode == Mode::Deploy
            && src.value.is_none()
            && let Some(path) = l.secret_file(id)
            && let Err(e) = std::fs::metadata(&path)
        {
            let ff = format!("{f}.file");
            p.add(
                ix.at(&ff),
                ff,
                format!("cannot read {}: {e}", path.display()),
            );
        }
    }
    if mode != Mode::Deploy {
        return;
    }
    for s in &app.secrets {
        let given = l.spec.secrets.get(&s.id).is_some_and(|src| {
            src.value.is_some() || src.file.is_some() || src.generate || src.existing
        });
        if s.required && !given {
            let what = if s.description.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.description)
            };
            p.add(
                written_or_file(ix, &format!("secrets.{}", s.id)),
                format!("secrets.{}", s.id),
                format!(
                    "required by the app{what}: give it with --set secrets.{0}.file=PATH (or secrets.{0}=VALUE, or `existing: true` for a Secret already in the namespace)",
                    s.id
                ),
            );
        }
    }
}

/// A role's resources as numbers, for start scripts: whole cores (limit, else request,
/// rounded up) and MiB of memory.
pub fn sizing(l: &Layered, role: &Role) -> (Option<u64>, Option<u64>) {
    let Some(res) = l
        .spec
        .roles
        .get(&role.id)
        .and_then(|r| r.resources.as_ref())
    else {
        return (None, None);
    };
    let pick = |name: &str| {
        res.limits
            .get(name)
            .or(res.requests.get(name))
            .and_then(|v| quantity::parse(v))
    };
    let cpu = pick("cpu").map(|c| (c.ceil() as u64).max(1));
    let mem = pick("memory").map(|m| (m / (1024.0 * 1024.0)).floor() as u64);
    (cpu, mem)
}

/// The spec the engine stores to re-render (e.g. with new member counts): every role's count
/// explicit, and secrets as `existing` so no value is ever written down.
pub fn stored_spec(app: &App, l: &Layered) -> ClusterSpec {
    let mut spec = l.spec.clone();
    spec.instance = Some(l.instance(app).to_string());
    spec.namespace = Some(l.namespace().to_string());
    for role in &app.roles {
        let members = l.members(role);
        spec.roles.entry(role.id.clone()).or_default().members = Some(members);
    }
    let mut secrets = BTreeMap::new();
    for s in &app.secrets {
        secrets.insert(
            s.id.clone(),
            model::SecretSource {
                existing: true,
                ..Default::default()
            },
        );
    }
    spec.secrets = secrets;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_in_origins() {
        assert_eq!(mask("secrets.token=abc"), "secrets.token=<hidden>");
        assert_eq!(
            mask("secrets.token.value=abc"),
            "secrets.token.value=<hidden>"
        );
        assert_eq!(mask("secrets.ent.file=./e.dat"), "secrets.ent.file=./e.dat");
        assert_eq!(mask("worker.members=3"), "worker.members=3");
    }
}
