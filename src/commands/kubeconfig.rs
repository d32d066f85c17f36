//! `--merge-kubeconfig`: add the cluster's admin credentials to ~/.kube/config as a named
//! context, replacing entries of the same name and keeping everything else.

use anyhow::Context;
use serde_yaml::{Mapping, Value};

fn named_list<'a>(doc: &'a mut Mapping, key: &str) -> anyhow::Result<&'a mut Vec<Value>> {
    let entry = doc
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if entry.is_null() {
        *entry = Value::Sequence(Vec::new());
    }
    entry
        .as_sequence_mut()
        .with_context(|| format!("~/.kube/config: `{key}` is not a list"))
}

fn upsert(list: &mut Vec<Value>, item: Value) {
    let name = item.get("name").cloned();
    list.retain(|v| v.get("name") != name.as_ref());
    list.push(item);
}

/// Merge `admin` (a kubeconfig with one cluster, user and context) under the names
/// `<cluster>`, `<cluster>-admin` and `<cluster>-admin@<cluster>`; returns the context name.
pub fn merge(
    existing: Option<&str>,
    admin: &str,
    cluster: &str,
) -> anyhow::Result<(String, String)> {
    let src: Value = serde_yaml::from_str(admin).context("generated kubeconfig does not parse")?;
    let mut doc: Mapping = match existing {
        Some(t) if !t.trim().is_empty() => {
            serde_yaml::from_str(t).context("~/.kube/config does not parse")?
        }
        _ => {
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Config".into());
            m
        }
    };
    let first = |key: &str, inner: &str| -> anyhow::Result<Value> {
        src.get(key)
            .and_then(|l| l.get(0))
            .and_then(|e| e.get(inner))
            .cloned()
            .with_context(|| format!("generated kubeconfig lacks {key}[0].{inner}"))
    };
    let user_name = format!("{cluster}-admin");
    let ctx_name = format!("{user_name}@{cluster}");
    let mut c = Mapping::new();
    c.insert("name".into(), cluster.into());
    c.insert("cluster".into(), first("clusters", "cluster")?);
    upsert(named_list(&mut doc, "clusters")?, Value::Mapping(c));
    let mut u = Mapping::new();
    u.insert("name".into(), user_name.clone().into());
    u.insert("user".into(), first("users", "user")?);
    upsert(named_list(&mut doc, "users")?, Value::Mapping(u));
    let mut inner = Mapping::new();
    inner.insert("cluster".into(), cluster.into());
    inner.insert("user".into(), user_name.into());
    let mut x = Mapping::new();
    x.insert("name".into(), ctx_name.clone().into());
    x.insert("context".into(), Value::Mapping(inner));
    upsert(named_list(&mut doc, "contexts")?, Value::Mapping(x));
    if doc
        .get("current-context")
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        doc.insert("current-context".into(), ctx_name.clone().into());
    }
    Ok((serde_yaml::to_string(&doc)?, ctx_name))
}

pub fn merge_into_user_config(admin: &str, cluster: &str) -> anyhow::Result<()> {
    let home = dirs::home_dir().context("no home directory for ~/.kube/config")?;
    let dir = home.join(".kube");
    crate::paths::ensure_private_dir(&dir)?;
    let path = dir.join("config");
    let existing = std::fs::read_to_string(&path).ok();
    let (text, ctx) = merge(existing.as_deref(), admin, cluster)?;
    crate::cluster_state::write_private(&path, text.as_bytes())?;
    eprintln!("merged into {} as context {ctx}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\nusers:\n- name: admin\n  user:\n    client-certificate-data: AAA\ncontexts:\n- name: admin@lab\n  context:\n    cluster: lab\n    user: admin\ncurrent-context: admin@lab\n";

    #[test]
    fn merges_and_replaces_by_name() {
        let existing = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://x}\n- name: lab\n  cluster: {server: https://old}\ncurrent-context: other-ctx\n";
        let (text, ctx) = merge(Some(existing), ADMIN, "lab").unwrap();
        assert_eq!(ctx, "lab-admin@lab");
        let v: Value = serde_yaml::from_str(&text).unwrap();
        let clusters = v["clusters"].as_sequence().unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(
            clusters[1]["cluster"]["server"].as_str(),
            Some("https://10.0.0.1:6443")
        );
        assert_eq!(v["current-context"].as_str(), Some("other-ctx"));
        // Merging again changes nothing.
        let (again, _) = merge(Some(&text), ADMIN, "lab").unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn creates_a_new_config() {
        let (text, _) = merge(None, ADMIN, "lab").unwrap();
        let v: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["current-context"].as_str(), Some("lab-admin@lab"));
    }
}
