//! Templates and role files shipped inside the binary, rendered with tera: a component's
//! templates live beside its `roles/<component>/role.yaml` and are named `<component>/<file>`;
//! templates of no component (lab, netcheck, scripts) live under `templates/`, named by their path
//! there. Extra settings from the inventory are deep-merged into rendered YAML/TOML.

use include_dir::{Dir, include_dir};
use tera::Tera;

use super::role::{ComponentRole, RoleError};

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static ROLES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/roles");

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name}: {detail}")]
    Template { name: String, detail: String },
    #[error("template {name} produced invalid {format} to merge extra settings into: {detail}")]
    Merge {
        name: String,
        format: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Role(#[from] RoleError),
}

/// Tera's error chain, flattened: its top-level message alone rarely says what went wrong.
pub(crate) fn chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}

pub struct Renderer {
    tera: Tera,
}

impl Renderer {
    /// Load every embedded template.
    pub fn new() -> Result<Self, RenderError> {
        let mut tera = new_tera();
        let mut files = Vec::new();
        collect(&TEMPLATES, &mut files);
        collect(&ROLES, &mut files);
        for (name, text) in files {
            tera.add_raw_template(&name, &text)
                .map_err(|e| RenderError::Template {
                    name: name.clone(),
                    detail: chain(&e),
                })?;
        }
        Ok(Renderer { tera })
    }

    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera
            .render(name, ctx)
            .map_err(|e| RenderError::Template {
                name: name.to_string(),
                detail: chain(&e),
            })
    }

    /// Render a short inline template (paths in role files such as `kubelet-{{ node.name }}.crt`).
    pub fn render_str(&self, text: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        Tera::one_off(text, ctx, false).map_err(|e| RenderError::Template {
            name: text.to_string(),
            detail: chain(&e),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|n| n == name)
    }
}

/// A tera instance as every template of director-boot is rendered (node files, app files): no
/// HTML escaping, and the `sh` filter.
pub(crate) fn new_tera() -> Tera {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    tera.register_filter("sh", sh_filter);
    tera
}

/// `{{ value | sh }}`: the value single-quoted for a POSIX shell.
fn sh_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = match value {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(tera::Value::String(crate::node::shell_quote(&text)))
}

fn collect(dir: &Dir<'_>, out: &mut Vec<(String, String)>) {
    for f in dir.files().filter(|f| !is_role_file(f)) {
        if let Some(text) = f.contents_utf8() {
            out.push((f.path().to_string_lossy().into_owned(), text.to_string()));
        }
    }
    for d in dir.dirs() {
        collect(d, out);
    }
}

/// The file in each component directory that defines the role; the rest are its templates.
const ROLE_FILE: &str = "role.yaml";

fn is_role_file(f: &include_dir::File<'_>) -> bool {
    f.path().file_name().is_some_and(|n| n == ROLE_FILE)
}

/// Every role shipped in `roles/<component>/role.yaml`, in directory-name order.
pub fn roles() -> Result<Vec<ComponentRole>, RenderError> {
    let mut files: Vec<_> = ROLES
        .dirs()
        .flat_map(|d| d.files())
        .filter(|f| is_role_file(f))
        .collect();
    files.sort_by_key(|f| f.path().to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let name = f.path().to_string_lossy().into_owned();
        let text = f.contents_utf8().unwrap_or_default();
        out.push(ComponentRole::parse(&name, text)?);
    }
    Ok(out)
}

/// Deep-merge `extra` (from the inventory) into rendered YAML or TOML, chosen by file name.
pub fn merge_extra(
    name: &str,
    rendered: &str,
    extra: &serde_json::Value,
) -> Result<String, RenderError> {
    let empty = extra.as_object().is_none_or(|m| m.is_empty());
    if empty {
        return Ok(rendered.to_string());
    }
    if name.ends_with(".toml") {
        let mut base: toml::Value = toml::from_str(rendered).map_err(|e| RenderError::Merge {
            name: name.into(),
            format: "TOML",
            detail: e.to_string(),
        })?;
        let extra: toml::Value =
            serde_json::from_value(extra.clone()).map_err(|e| RenderError::Merge {
                name: name.into(),
                format: "TOML",
                detail: e.to_string(),
            })?;
        merge_toml(&mut base, extra);
        toml::to_string(&base).map_err(|e| RenderError::Merge {
            name: name.into(),
            format: "TOML",
            detail: e.to_string(),
        })
    } else {
        let mut base: serde_json::Value =
            serde_yaml::from_str(rendered).map_err(|e| RenderError::Merge {
                name: name.into(),
                format: "YAML",
                detail: e.to_string(),
            })?;
        merge_json(&mut base, extra.clone());
        serde_yaml::to_string(&base).map_err(|e| RenderError::Merge {
            name: name.into(),
            format: "YAML",
            detail: e.to_string(),
        })
    }
}

fn merge_json(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn merge_toml(base: &mut toml::Value, extra: toml::Value) {
    match (base, extra) {
        (toml::Value::Table(b), toml::Value::Table(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge_toml(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_yaml_deeply() {
        let out = merge_extra(
            "kubelet/config.yaml",
            "a: 1\nb:\n  c: 2\n  d: 3\n",
            &serde_json::json!({"b": {"c": 9}, "e": true}),
        )
        .unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "b": {"c": 9, "d": 3}, "e": true})
        );
    }

    #[test]
    fn merges_toml_deeply() {
        let out = merge_extra(
            "containerd/config.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"p\"\n",
            &serde_json::json!({"plugins": {"io.containerd.grpc.v1.cri": {"restrict_oom_score_adj": true}}}),
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&out).unwrap();
        let cri = &v["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["sandbox_image"].as_str(), Some("p"));
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
    }

    #[test]
    fn empty_extra_keeps_text() {
        assert_eq!(
            merge_extra("x.yaml", "a: 1 # c\n", &serde_json::json!({})).unwrap(),
            "a: 1 # c\n"
        );
    }
}
