//! The app catalog: complex stateful apps as data (an `app.yaml`, a default `cluster.yaml`,
//! scripts and templates), checked offline and rendered into Kubernetes objects.
//!
//! CONTRACT: `prepare(name_or_path, overrides)` returns a `RenderedApp` (rendered.rs), the
//! input of the apps engine (src/apps), or every problem found, each naming file, line and
//! column (or the command-line argument) and the field.
//!
//! The pipeline: `source` (embedded catalog or a directory) -> `yaml` (nodes that know their
//! origin) -> `schema` + `model` (fields and types) -> `check` (the app) and `cluster` (the
//! layered cluster spec) -> `render` (tera, templates in `catalog/_base/`).

mod check;
mod cluster;
mod model;
mod names;
mod problems;
mod quantity;
mod render;
mod rendered;
mod schema;
mod source;
#[cfg(test)]
mod tests;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{App, ClusterSpec, Role};
pub use problems::Problem;
pub use render::ANNOTATION_SECRET_SOURCE;
pub use rendered::*;
pub use yaml::{At, Source};

use problems::{Index, Problems};
use source::AppFiles;

/// The cluster's DNS domain (what `init` configures CoreDNS and the kubelets with).
pub const DOMAIN: &str = "cluster.local";

/// What the user layers over an app's default cluster spec.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--cluster FILE` (or a stored spec: `RenderedApp::cluster_spec_yaml`).
    pub cluster: Option<ClusterInput>,
    /// `--set PATH=VALUE`, in order: `worker.members=3`, `secrets.token=...`,
    /// `secrets.entitlement.file=./e.dat`, `serviceType=ClusterIP`.
    pub sets: Vec<String>,
    /// `--namespace NS`.
    pub namespace: Option<String>,
    /// `--instance NAME`.
    pub instance: Option<String>,
    /// The API server the app goes to (deploy-app knows it once connected); templates read
    /// it as `api.server` and `api.kubeconfig`.
    pub api: Option<ApiFacts>,
}

/// The API server an app is deployed through, as its `usage` text shows it to the user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiFacts {
    /// `https://HOST:PORT`.
    pub server: String,
    /// The kubeconfig file deploy-app used.
    pub kubeconfig: String,
}

#[derive(Debug, Clone)]
pub enum ClusterInput {
    File(PathBuf),
    /// Spec text already in memory; `name` is what messages call it.
    Text {
        name: String,
        text: String,
    },
}

/// Whether values only the deploying user has (required secrets, the license acceptance) must
/// be there: yes for `deploy-app`, no for `catalog validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Deploy,
    Check,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no app \"{name}\" in the catalog{}; apps: {} (for a directory, give a path like ./{name})",
        .suggestion.as_ref().map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default(),
        .available.join(", "))]
    NotFound {
        name: String,
        available: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("{path} is not an app directory: it has no app.yaml")]
    NotAnApp { path: PathBuf },
    #[error("{}", ProblemList(.problems))]
    Invalid { app: String, problems: Vec<Problem> },
}

impl CatalogError {
    /// The problems, for machine-readable output (empty for "not found" errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            CatalogError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{}:", if n == 1 { "" } else { "s" })?;
        for p in self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// An app read and checked on its own (no cluster spec yet).
#[derive(Debug, Clone)]
pub struct LoadedApp {
    pub app: App,
    /// `catalog/spark` or the directory given.
    pub dir: String,
    pub embedded: bool,
    files: AppFiles,
    index: Index,
}

impl LoadedApp {
    /// The default cluster spec's text, if the app has one.
    pub fn default_spec(&self) -> Option<String> {
        self.files.read(cluster::DEFAULT_SPEC).ok().flatten()
    }
}

/// The names of the apps shipped in the binary.
pub fn embedded_apps() -> Vec<String> {
    source::embedded_names()
}

fn locate(name_or_path: &str) -> Result<AppFiles, CatalogError> {
    if source::is_path(name_or_path) {
        let path = Path::new(name_or_path);
        if !path.join("app.yaml").is_file() {
            return Err(CatalogError::NotAnApp {
                path: path.to_path_buf(),
            });
        }
        return Ok(AppFiles::from_dir(path));
    }
    AppFiles::embedded(name_or_path).ok_or_else(|| {
        let available = source::embedded_names();
        CatalogError::NotFound {
            name: name_or_path.to_string(),
            suggestion: names::suggest(name_or_path, available.iter().map(String::as_str))
                .map(str::to_string),
            available,
        }
    })
}

fn invalid(app: &str, mut p: Problems) -> CatalogError {
    // Checks run section by section; a reader goes through each file top to bottom.
    p.list.sort_by_key(|x| {
        let (file, arg) = match &*x.at.source {
            Source::File(f) => (f.clone(), false),
            Source::Arg(a) => (a.clone(), true),
        };
        (arg, x.at.mark.is_none(), file, x.at.mark)
    });
    p.list.dedup();
    CatalogError::Invalid {
        app: app.to_string(),
        problems: p.list,
    }
}

fn load_files(files: AppFiles, p: &mut Problems) -> Option<LoadedApp> {
    let shown = files.display("app.yaml");
    let text = match files.read("app.yaml") {
        Ok(Some(t)) => t,
        Ok(None) => {
            p.add(
                At::file(&shown),
                "",
                "missing: an app directory needs an app.yaml",
            );
            return None;
        }
        Err(e) => {
            p.add(At::file(&shown), "", format!("cannot read it: {e}"));
            return None;
        }
    };
    let root = match yaml::parse(&text, Source::File(shown.clone())) {
        Ok(Some(root)) => root,
        Ok(None) => {
            p.add(
                At::file(&shown),
                "",
                "is empty: it needs at least `name` and `roles`",
            );
            return None;
        }
        Err((at, message)) => {
            p.add(at, "", message);
            return None;
        }
    };
    let mut index = Index::new(root.at.clone());
    let value = schema::check(&root, &model::APP, "", &mut index, p)?;
    let app: App = match serde_json::from_value(value) {
        Ok(app) => app,
        Err(e) => {
            p.add(root.at.clone(), "", format!("cannot be read: {e}"));
            return None;
        }
    };
    check::check_app(&files, &app, &index, p);
    Some(LoadedApp {
        dir: files.dir_display(),
        embedded: files.is_embedded(),
        app,
        files,
        index,
    })
}

/// Read and check an app (without a cluster spec).
pub fn load(name_or_path: &str) -> Result<LoadedApp, CatalogError> {
    let files = locate(name_or_path)?;
    let name = files.name.clone();
    let mut p = Problems::default();
    match load_files(files, &mut p) {
        Some(loaded) if p.is_empty() => Ok(loaded),
        _ => Err(invalid(&name, p)),
    }
}

fn render_with(
    loaded: &LoadedApp,
    overrides: &Overrides,
    mode: Mode,
    p: &mut Problems,
) -> Option<RenderedApp> {
    let layered = cluster::layer(&loaded.files, &loaded.app, overrides, p)?;
    cluster::check_cluster(&loaded.app, &loaded.index, &layered, mode, p);
    if !p.is_empty() {
        return None;
    }
    render::render(
        &render::Input {
            files: &loaded.files,
            app: &loaded.app,
            app_ix: &loaded.index,
            cluster: &layered,
            mode,
            api: overrides.api.as_ref(),
        },
        p,
    )
}

/// The engine's entry point: an app (catalog name or directory) rendered for the cluster spec
/// the overrides give. Secrets carry real values (generated ones are fresh each call; see
/// `ANNOTATION_SECRET_SOURCE`).
pub fn prepare(name_or_path: &str, overrides: &Overrides) -> Result<RenderedApp, CatalogError> {
    let files = locate(name_or_path)?;
    let name = files.name.clone();
    let mut p = Problems::default();
    let rendered = load_files(files, &mut p)
        .filter(|_| p.is_empty())
        .and_then(|loaded| render_with(&loaded, overrides, Mode::Deploy, &mut p));
    match rendered {
        Some(r) if p.is_empty() => Ok(r),
        _ => Err(invalid(&name, p)),
    }
}

/// What `catalog validate` checked, for its report.
#[derive(Debug, Clone)]
pub struct Validated {
    pub app: String,
    pub dir: String,
    /// Member counts each rendering used (role -> members), default spec first.
    pub renders: Vec<Vec<(String, u32)>>,
    /// Objects in the default rendering.
    pub objects: usize,
}

/// Check an app, its default cluster spec, and that it renders at the default member counts
/// and at each role's bounds (min, and max or default+1).
pub fn validate(name_or_path: &str) -> Result<Validated, CatalogError> {
    let files = locate(name_or_path)?;
    let name = files.name.clone();
    let mut p = Problems::default();
    let Some(loaded) = load_files(files, &mut p).filter(|_| p.is_empty()) else {
        return Err(invalid(&name, p));
    };
    let Some(first) = render_with(&loaded, &Overrides::default(), Mode::Check, &mut p) else {
        return Err(invalid(&name, p));
    };
    let counts = |r: &RenderedApp| -> Vec<(String, u32)> {
        r.roles.iter().map(|x| (x.id.clone(), x.members)).collect()
    };
    let mut renders = vec![counts(&first)];
    let objects = object_count(&first);
    for bound in [Bound::Min, Bound::Max] {
        let sets: Vec<String> = first
            .roles
            .iter()
            .map(|r| {
                let n = match bound {
                    Bound::Min => r.min_members,
                    Bound::Max => r.max_members.unwrap_or(r.members + 1),
                };
                format!("{}.members={n}", r.id)
            })
            .collect();
        let ov = Overrides {
            sets,
            ..Default::default()
        };
        if let Some(r) = render_with(&loaded, &ov, Mode::Check, &mut p) {
            renders.push(counts(&r));
        }
    }
    if !p.is_empty() {
        return Err(invalid(&name, p));
    }
    Ok(Validated {
        app: loaded.app.name.clone(),
        dir: loaded.dir.clone(),
        renders,
        objects,
    })
}

enum Bound {
    Min,
    Max,
}

/// Every object of a rendered app.
pub fn objects(r: &RenderedApp) -> Vec<&serde_json::Value> {
    let mut out: Vec<&serde_json::Value> = r.shared.iter().collect();
    for role in &r.roles {
        out.push(&role.statefulset);
        out.extend(role.member_services.iter());
        out.extend(role.extra.iter());
    }
    out
}

fn object_count(r: &RenderedApp) -> usize {
    objects(r).len()
}

/// A copy with every Secret's data replaced by its size, for printing.
pub fn masked(r: &RenderedApp) -> RenderedApp {
    let mut out = r.clone();
    for obj in out
        .shared
        .iter_mut()
        .chain(out.roles.iter_mut().flat_map(|role| role.extra.iter_mut()))
    {
        if obj["kind"] != "Secret" {
            continue;
        }
        for field in ["data", "stringData"] {
            if let Some(data) = obj.get_mut(field).and_then(|d| d.as_object_mut()) {
                for v in data.values_mut() {
                    let len = v.as_str().map(str::len).unwrap_or(0);
                    *v = serde_json::Value::String(format!("<hidden: {len} characters>"));
                }
            }
        }
    }
    out
}
