//! The checks on an app that the schema cannot express: names Kubernetes will accept, roles
//! that exist and do not depend on themselves, ports, probes, files present in the app
//! directory, secrets that are declared.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::model::{App, Probe, Role};
use super::names::{self, suggest};
use super::problems::{Index, Problems};
use super::source::AppFiles;

/// Environment variables director-boot sets itself (plus every `DB_*`).
pub const RESERVED_ENV: [&str; 2] = ["POD_NAME", "POD_IP"];

/// Where the scripts ConfigMap and the membership ConfigMap are mounted (one projected volume).
pub const MOUNT: &str = "/etc/director-boot";

/// Keys of the membership ConfigMap, which share the mount with the scripts.
pub const MEMBERSHIP_KEYS: [&str; 2] = ["membership.json", "membership.env"];

/// Kubernetes appends `-<10-character revision hash>` to a StatefulSet's name in a label value
/// (at most 63 characters), so the name itself must stay within 52.
pub const MAX_STATEFULSET_NAME: usize = 52;

/// Top-level words of a cluster spec; a role may not take one as its id, or `--set` paths
/// (`--set worker.members=3`) would be ambiguous.
pub const RESERVED_ROLE_IDS: [&str; 3] = ["roles", "secrets", "instance"];

pub fn check_app(files: &AppFiles, app: &App, ix: &Index, p: &mut Problems) {
    if !app.name.is_empty() {
        if let Some(why) = names::dns1035(&app.name) {
            p.add(
                ix.at("name"),
                "name",
                format!("`{}` {why} (an app name is a DNS label)", app.name),
            );
        } else if !files.name.is_empty() && app.name != files.name {
            p.add(
                ix.at("name"),
                "name",
                format!(
                    "`{}` differs from the directory name `{}`: they must match",
                    app.name, files.name
                ),
            );
        }
    }
    if let Some(image) = &app.image {
        image_check(image, "image", ix, p);
    }
    env_check(&app.env, "env", ix, p);
    caps_check(&app.capabilities, "capabilities", ix, p);
    pod_security_check(app, ix, p);
    secrets_check(app, ix, p);
    for (i, f) in app.files.iter().enumerate() {
        file_check(files, f, &format!("files[{i}]"), ix, p);
    }
    if let Some(usage) = &app.usage {
        file_check(files, usage, "usage", ix, p);
    }
    if let Some(help) = &app.image_help {
        file_check(files, help, "imageHelp", ix, p);
    }
    for (i, role) in app.roles.iter().enumerate() {
        if let Some(sa) = &role.service_account
            && let Some(why) = names::dns1123(sa)
        {
            let f = format!("roles[{i}].serviceAccount");
            p.add(ix.at(&f), f, format!("`{sa}` {why}"));
        }
    }
    for (i, t) in app.templates.iter().enumerate() {
        let field = format!("templates[{i}]");
        file_check(files, &t.file, &format!("{field}.file"), ix, p);
        if let Some(role) = &t.role
            && !app.roles.iter().any(|r| &r.id == role)
        {
            p.add(
                ix.at(&format!("{field}.role")),
                format!("{field}.role"),
                unknown_role(role, app),
            );
        }
    }
    if app.roles.is_empty() && ix.has("roles") {
        p.add(
            ix.at("roles"),
            "roles",
            "no roles: an app needs at least one",
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, role) in app.roles.iter().enumerate() {
        let field = format!("roles[{i}]");
        if role.id.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(&role.id, i) {
            p.add(
                ix.at(&format!("{field}.id")),
                format!("{field}.id"),
                format!("duplicate role id \"{}\" (also roles[{first}])", role.id),
            );
        }
        role_check(files, app, role, &field, ix, p);
    }
    cycles(app, ix, p);
    script_keys(app, ix, p);
}

fn role_check(files: &AppFiles, app: &App, role: &Role, field: &str, ix: &Index, p: &mut Problems) {
    let f = |s: &str| format!("{field}.{s}");
    let id_field = f("id");
    if let Some(why) = names::dns1035(&role.id) {
        p.add(
            ix.at(&id_field),
            &id_field,
            format!("`{}` {why} (a role id is a DNS label)", role.id),
        );
    } else if RESERVED_ROLE_IDS.contains(&role.id.as_str()) {
        p.add(
            ix.at(&id_field),
            &id_field,
            format!(
                "`{}` is reserved (a cluster spec uses it at the top level)",
                role.id
            ),
        );
    } else if !app.name.is_empty() {
        name_lengths(&app.name, role, &id_field, ix, p, "the app name");
    }

    // Cardinality.
    let (min, max) = (role.members.min, role.members.max);
    if let Some(max) = max {
        if min > max {
            p.add(
                ix.at(&f("members")),
                f("members"),
                format!("min {min} is greater than max {max}"),
            );
        } else if max == 0 {
            p.add(
                ix.at(&f("members.max")),
                f("members.max"),
                "max 0: the role could never run a member",
            );
        }
    }

    match (&role.image, &app.image) {
        (Some(image), _) => image_check(image, &f("image"), ix, p),
        (None, Some(_)) => {}
        (None, None) => p.add(
            ix.at(field),
            f("image"),
            "missing: give the role an `image`, or the app a default `image`",
        ),
    }

    // dependsOn: roles that exist, not itself, each once.
    let mut deps = HashSet::new();
    for (j, dep) in role.depends_on.iter().enumerate() {
        let df = format!("{field}.dependsOn[{j}]");
        if dep == &role.id {
            p.add(ix.at(&df), &df, format!("role \"{dep}\" depends on itself"));
        } else if !app.roles.iter().any(|r| &r.id == dep) {
            p.add(ix.at(&df), &df, unknown_role(dep, app));
        } else if !deps.insert(dep) {
            p.add(ix.at(&df), &df, format!("\"{dep}\" is listed twice"));
        }
    }

    // Services: ids and ports unique within the role, names Kubernetes accepts.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut ports: HashMap<u16, usize> = HashMap::new();
    for (j, svc) in role.services.iter().enumerate() {
        let sf = format!("{field}.services[{j}]");
        if svc.id.is_empty() {
            continue;
        }
        if let Some(first) = ids.insert(&svc.id, j) {
            p.add(
                ix.at(&format!("{sf}.id")),
                format!("{sf}.id"),
                format!(
                    "duplicate service id \"{}\" in role \"{}\" (also services[{first}])",
                    svc.id, role.id
                ),
            );
        } else if let Some(why) = names::port_name(&svc.port_name()) {
            p.add(
                ix.at(&format!("{sf}.id")),
                format!("{sf}.id"),
                format!(
                    "the port name `{}` (`<scheme>-<id>`) {why}: shorten the id or the scheme",
                    svc.port_name()
                ),
            );
        }
        if svc.port != 0
            && let Some(first) = ports.insert(svc.port, j)
        {
            p.add(
                ix.at(&format!("{sf}.port")),
                format!("{sf}.port"),
                format!(
                    "port {} is already used by services[{first}] (\"{}\") of role \"{}\"",
                    svc.port, role.services[first].id, role.id
                ),
            );
        }
        if let Some(scheme) = &svc.scheme
            && !scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            p.add(
                ix.at(&format!("{sf}.scheme")),
                format!("{sf}.scheme"),
                format!("`{scheme}`: a URL scheme is lowercase letters and digits, like http"),
            );
        }
        if svc.dashboard && !svc.is_http() {
            p.add(
                ix.at(&format!("{sf}.dashboard")),
                format!("{sf}.dashboard"),
                format!(
                    "only an http or https service can be a dashboard (scheme is {})",
                    svc.scheme
                        .as_deref()
                        .map(|s| format!("`{s}`"))
                        .unwrap_or_else(|| "not set".into())
                ),
            );
        }
        if let Some(path) = &svc.path
            && !path.starts_with('/')
        {
            p.add(
                ix.at(&format!("{sf}.path")),
                format!("{sf}.path"),
                format!("`{path}` must start with `/`"),
            );
        }
    }

    if !role.start.is_empty() {
        file_check(files, &role.start, &f("start"), ix, p);
    }
    for (event, file) in role.hooks.each() {
        file_check(files, file, &f(&format!("hooks.{event}")), ix, p);
    }
    if let Some(probe) = &role.readiness {
        probe_check(role, probe, &f("readiness"), ix, p);
    }
    if let Some(probe) = &role.liveness {
        probe_check(role, probe, &f("liveness"), ix, p);
    }

    let mut dirs = HashSet::new();
    for (j, dir) in role.persist_dirs.iter().enumerate() {
        let pf = format!("{field}.persistDirs[{j}]");
        let why = if !dir.starts_with('/') || dir.len() < 2 {
            Some(format!("`{dir}` must be an absolute path below /"))
        } else if dir.split('/').any(|c| c == ".." || c == ".") {
            Some(format!("`{dir}` must not hold `.` or `..`"))
        } else if dir == MOUNT || dir.starts_with(&format!("{MOUNT}/")) {
            Some(format!("`{dir}` is where director-boot mounts the scripts"))
        } else if !dirs.insert(dir.trim_end_matches('/')) {
            Some(format!("`{dir}` is listed twice"))
        } else {
            None
        };
        if let Some(why) = why {
            p.add(ix.at(&pf), pf, why);
        }
    }

    env_check(&role.env, &f("env"), ix, p);
    caps_check(&role.capabilities, &f("capabilities"), ix, p);

    for (j, used) in role.secrets.iter().enumerate() {
        let uf = format!("{field}.secrets[{j}]");
        if !used.id.is_empty() && !app.secrets.iter().any(|s| s.id == used.id) {
            let declared: Vec<&str> = app.secrets.iter().map(|s| s.id.as_str()).collect();
            let hint = suggest(&used.id, declared.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            p.add(
                ix.at(&format!("{uf}.id")),
                format!("{uf}.id"),
                format!(
                    "secret \"{}\" is not declared in the app's `secrets` (declared: {}{hint})",
                    used.id,
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            );
        }
        if used.env.is_none() && used.mount_path.is_none() {
            p.add(
                ix.at(&uf),
                &uf,
                "say how the role gets the secret: `env: NAME`, `mountPath: /dir`, or both",
            );
        }
        if let Some(env) = &used.env {
            let ef = format!("{uf}.env");
            if let Some(why) = env_why(env) {
                p.add(ix.at(&ef), ef, format!("`{env}` {why}"));
            }
        }
        if let Some(path) = &used.mount_path
            && !path.starts_with('/')
        {
            let mf = format!("{uf}.mountPath");
            p.add(ix.at(&mf), mf, format!("`{path}` must be an absolute path"));
        }
    }
}

/// The longest names a role gives Kubernetes objects, for an instance name.
pub fn name_lengths(
    instance: &str,
    role: &Role,
    field: &str,
    ix: &Index,
    p: &mut Problems,
    what: &str,
) {
    let sts = format!("{instance}-{}", role.id);
    let last = role.members.max.unwrap_or(role.members.min.max(1)).max(1) - 1;
    let pod = format!("{sts}-{last}");
    if sts.len() > MAX_STATEFULSET_NAME {
        p.add(
            ix.at(field),
            field,
            format!(
                "the StatefulSet name `{sts}` ({what} + role) is {} characters long; at most {MAX_STATEFULSET_NAME} fit (Kubernetes adds a revision hash in a label)",
                sts.len()
            ),
        );
    } else if pod.len() > 63 {
        p.add(
            ix.at(field),
            field,
            format!(
                "the member name `{pod}` (`<instance>-<role>-<ordinal>`) is {} characters long; at most 63 fit in a DNS label",
                pod.len()
            ),
        );
    }
}

pub fn unknown_role(name: &str, app: &App) -> String {
    let ids: Vec<&str> = app.roles.iter().map(|r| r.id.as_str()).collect();
    let hint = suggest(name, ids.iter().copied())
        .map(|s| format!("; did you mean \"{s}\"?"))
        .unwrap_or_default();
    format!("unknown role \"{name}\" (roles: {}{hint})", ids.join(", "))
}

fn probe_check(role: &Role, probe: &Probe, field: &str, ix: &Index, p: &mut Problems) {
    let kinds = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        p.add(
            ix.at(field),
            field,
            format!("give exactly one of httpGet, tcpSocket or exec (found {kinds})"),
        );
    }
    let port = probe
        .http_get
        .as_ref()
        .map(|h| (h.port.as_str(), "httpGet"))
        .or(probe
            .tcp_socket
            .as_ref()
            .map(|t| (t.port.as_str(), "tcpSocket")));
    if let Some((port, kind)) = port {
        let pf = format!("{field}.{kind}.port");
        if resolve_port(role, port).is_none() {
            let declared: Vec<String> = role
                .services
                .iter()
                .map(|s| format!("{} {}", s.id, s.port))
                .collect();
            p.add(
                ix.at(&pf),
                pf,
                format!(
                    "port `{port}` is not one of the role's services ({})",
                    if declared.is_empty() {
                        "it has none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            );
        }
    }
    if let Some(h) = &probe.http_get
        && let Some(path) = &h.path
        && !path.starts_with('/')
    {
        let pf = format!("{field}.httpGet.path");
        p.add(ix.at(&pf), pf, format!("`{path}` must start with `/`"));
    }
    if probe.exec.as_ref().is_some_and(|c| c.is_empty()) {
        let ef = format!("{field}.exec");
        p.add(ix.at(&ef), ef, "an empty command: give the argv to run");
    }
}

/// A probe's port (a number or a service id) as a number, if the role declares it.
pub fn resolve_port(role: &Role, port: &str) -> Option<u16> {
    match port.parse::<u16>() {
        Ok(n) => role.services.iter().find(|s| s.port == n).map(|s| s.port),
        Err(_) => role.services.iter().find(|s| s.id == port).map(|s| s.port),
    }
}

fn secrets_check(app: &App, ix: &Index, p: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in app.secrets.iter().enumerate() {
        let field = format!("secrets[{i}]");
        if s.id.is_empty() {
            continue;
        }
        let idf = format!("{field}.id");
        if let Some(first) = seen.insert(&s.id, i) {
            p.add(
                ix.at(&idf),
                &idf,
                format!("duplicate secret id \"{}\" (also secrets[{first}])", s.id),
            );
        } else if let Some(why) = names::dns1035(&s.id) {
            p.add(
                ix.at(&idf),
                &idf,
                format!("`{}` {why} (a secret id is a DNS label)", s.id),
            );
        } else if s.id.len() > 56 {
            p.add(
                ix.at(&idf),
                &idf,
                format!("`{}` is longer than 56 characters", s.id),
            );
        }
        if let Some(why) = names::data_key(s.key()) {
            let kf = format!("{field}.key");
            p.add(ix.at(&kf), kf, why);
        }
        if s.required && s.generate {
            p.add(
                ix.at(&format!("{field}.generate")),
                format!("{field}.generate"),
                "a generated secret cannot also be `required` from the user: keep one",
            );
        }
    }
}

fn image_check(image: &str, field: &str, ix: &Index, p: &mut Problems) {
    if let Some(why) = names::image_ref(image) {
        p.add(
            ix.at(field),
            field,
            format!("`{image}` is not an image reference: {why}"),
        );
    }
}

/// Why an environment variable name cannot be used, if it cannot.
pub fn env_why(name: &str) -> Option<String> {
    if let Some(why) = names::env_name(name) {
        return Some(why);
    }
    (RESERVED_ENV.contains(&name) || name.starts_with("DB_"))
        .then(|| "is set by director-boot itself (POD_NAME, POD_IP and DB_*)".to_string())
}

pub fn env_check(env: &BTreeMap<String, String>, field: &str, ix: &Index, p: &mut Problems) {
    for name in env.keys() {
        if let Some(why) = env_why(name) {
            let ef = format!("{field}.{name}");
            p.add(ix.key_at(&ef), ef, format!("`{name}` {why}"));
        }
    }
}

/// Capabilities Pod Security's baseline level lets a container add.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The level an app declares must admit its pods: added capabilities beyond baseline's need
/// `privileged`; `restricted` admits none but NET_BIND_SERVICE (and needs what the
/// StatefulSet template does not set: non-root, no privilege escalation), so it is refused
/// for apps that add any other.
fn pod_security_check(app: &App, ix: &Index, p: &mut Problems) {
    let level = app.pod_security.as_deref().unwrap_or("baseline");
    let mut all: Vec<(String, &String)> = app
        .capabilities
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("capabilities[{i}]"), c))
        .collect();
    for (r, role) in app.roles.iter().enumerate() {
        all.extend(
            role.capabilities
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("roles[{r}].capabilities[{i}]"), c)),
        );
    }
    // Misspelled capabilities are caps_check's to report.
    for (field, cap) in all
        .into_iter()
        .filter(|(_, c)| names::capability(c).is_none())
    {
        let allowed = match level {
            "privileged" => true,
            "restricted" => cap == "NET_BIND_SERVICE",
            _ => BASELINE_CAPS.contains(&cap.as_str()),
        };
        if !allowed {
            p.add(
                ix.at(&field),
                field,
                format!(
                    "Pod Security level {level} does not admit adding {cap}: declare `podSecurity: privileged` at the top of app.yaml (deploy-app then labels the app's namespace with it)"
                ),
            );
        }
    }
}

fn caps_check(caps: &[String], field: &str, ix: &Index, p: &mut Problems) {
    for (i, cap) in caps.iter().enumerate() {
        if let Some(why) = names::capability(cap) {
            let cf = format!("{field}[{i}]");
            p.add(ix.at(&cf), cf, why);
        }
    }
}

fn file_check(files: &AppFiles, rel: &str, field: &str, ix: &Index, p: &mut Problems) {
    if let Some(why) = names::app_file(rel) {
        p.add(ix.at(field), field, why);
        return;
    }
    match files.read(rel) {
        Ok(Some(_)) => {}
        Ok(None) => p.add(
            ix.at(field),
            field,
            format!("no file `{rel}` in {}", files.dir_display()),
        ),
        Err(e) => p.add(
            ix.at(field),
            field,
            format!("cannot read {}: {e}", files.display(rel)),
        ),
    }
}

/// Dependency cycles, each named once (`a -> b -> a`).
fn cycles(app: &App, ix: &Index, p: &mut Problems) {
    let index: HashMap<&str, usize> = app
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; app.roles.len()];
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    fn visit(
        i: usize,
        app: &App,
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
        found: &mut Vec<Vec<usize>>,
    ) {
        state[i] = 1;
        path.push(i);
        for dep in &app.roles[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported as "depends on itself"
            }
            match state[j] {
                0 => visit(j, app, index, state, path, found),
                1 => {
                    if let Some(start) = path.iter().position(|&k| k == j) {
                        found.push(path[start..].to_vec());
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state[i] = 2;
    }
    let mut found = Vec::new();
    for i in 0..app.roles.len() {
        if state[i] == 0 {
            visit(i, app, &index, &mut state, &mut Vec::new(), &mut found);
        }
    }
    for cycle in found {
        let mut key = cycle.clone();
        key.sort();
        if !reported.insert(key) {
            continue;
        }
        let first = cycle[0];
        let mut names: Vec<&str> = cycle.iter().map(|&k| app.roles[k].id.as_str()).collect();
        names.push(&app.roles[first].id);
        let field = format!("roles[{first}].dependsOn");
        p.add(
            ix.at(&field),
            field,
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
}

/// The scripts ConfigMap's key for each file: start scripts `<role>.sh`, hooks
/// `<role>-<event>.sh`, other files by their base name.
pub fn script_keys(app: &App, ix: &Index, p: &mut Problems) -> BTreeMap<String, String> {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |key: String, what: String, field: String, p: &mut Problems| {
        if MEMBERSHIP_KEYS.contains(&key.as_str()) {
            p.add(
                ix.at(&field),
                field,
                format!("`{key}` is the membership file's name in {MOUNT}: rename it"),
            );
        } else if let Some(other) = keys.get(&key) {
            p.add(
                ix.at(&field),
                field,
                format!("would be mounted as {MOUNT}/{key}, which is already {other}: rename it"),
            );
        } else if let Some(why) = names::data_key(&key) {
            p.add(ix.at(&field), field, why);
        } else {
            keys.insert(key, what);
        }
    };
    for (i, role) in app.roles.iter().enumerate() {
        if role.id.is_empty() {
            continue;
        }
        claim(
            format!("{}.sh", role.id),
            format!("role \"{}\"'s start script", role.id),
            format!("roles[{i}].start"),
            p,
        );
        for (event, _) in role.hooks.each() {
            claim(
                format!("{}-{event}.sh", role.id),
                format!("role \"{}\"'s {event} hook", role.id),
                format!("roles[{i}].hooks.{event}"),
                p,
            );
        }
    }
    for (i, f) in app.files.iter().enumerate() {
        claim(
            names::base_name(f).to_string(),
            format!("files[{i}]"),
            format!("files[{i}]"),
            p,
        );
    }
    keys
}
