//! Results as text for people (`--json` prints the same structures with serde).

use super::apply::DeployOutcome;
use super::endpoints;
use super::manage::{DeleteOutcome, InstanceStatus, InstanceSummary};
use super::objects::Change;
use super::scale::ScaleOutcome;
use crate::output::table;

fn counts(applied: &[super::objects::Applied]) -> String {
    let n = |c: Change| applied.iter().filter(|a| a.change == c).count();
    format!(
        "{} created, {} configured, {} unchanged",
        n(Change::Created),
        n(Change::Configured),
        n(Change::Unchanged)
    )
}

/// After `deploy-app`: what changed, hooks that ran, the endpoints table.
pub fn deploy(o: &DeployOutcome) -> String {
    let mut s = format!(
        "{} ({}) in namespace {}: {} objects applied ({}) in {:.1} s\n",
        o.instance,
        o.app,
        o.namespace,
        o.applied.len(),
        counts(&o.applied),
        o.elapsed_secs
    );
    for r in &o.roles {
        s.push_str(&format!(
            "  {} {}/{} ready\n",
            r.id,
            r.ready_count(),
            r.members
        ));
    }
    for h in &o.hooks {
        s.push_str(&format!("  {} ran in {}\n", h.hook, h.pod));
    }
    if !o.endpoints.is_empty() {
        s.push('\n');
        s.push_str(&endpoints::table(&o.endpoints));
    }
    s
}

pub fn scale(o: &ScaleOutcome) -> String {
    if o.from == o.to && o.applied.is_empty() {
        let mut s = format!(
            "{} role {} already has {} members; nothing to scale\n",
            o.instance, o.role, o.to
        );
        if !o.services_deleted.is_empty() {
            s.push_str(&format!(
                "  left-over services deleted: {}\n",
                o.services_deleted.join(", ")
            ));
        }
        return s;
    }
    let mut s = format!(
        "{} role {}: {} -> {} members\n",
        o.instance, o.role, o.from, o.to
    );
    let mut line = |label: &str, v: &[String]| {
        if !v.is_empty() {
            s.push_str(&format!("  {label}: {}\n", v.join(", ")));
        }
    };
    line("added", &o.added);
    line("removed", &o.removed);
    line("services deleted", &o.services_deleted);
    line("volumes deleted", &o.pvcs_deleted);
    line("volumes kept (delete with --delete-data)", &o.pvcs_kept);
    for h in &o.hooks {
        s.push_str(&format!("  {} ran in {}\n", h.hook, h.pod));
    }
    if !o.endpoints.is_empty() {
        s.push('\n');
        s.push_str(&endpoints::table(&o.endpoints));
    }
    s
}

pub fn list(items: &[InstanceSummary]) -> String {
    if items.is_empty() {
        return "no app instances\n".to_string();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.instance.clone(),
                i.namespace.clone(),
                i.app.clone(),
                i.roles
                    .iter()
                    .map(|r| format!("{} {}/{}", r.role, r.ready, r.members))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    table(
        &["INSTANCE", "NAMESPACE", "APP", "ROLES (READY/DESIRED)"],
        &rows,
    )
}

pub fn status(st: &InstanceStatus) -> String {
    let mut s = format!(
        "{} ({}) in namespace {}\n\n",
        st.instance, st.app, st.namespace
    );
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for r in &st.roles {
        if !r.exists {
            rows.push(vec![
                r.id.clone(),
                format!("({} missing)", r.statefulset),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ]);
        }
        for m in &r.members_now {
            rows.push(vec![
                r.id.clone(),
                m.pod.clone(),
                m.phase.clone(),
                if m.ready { "yes" } else { "no" }.into(),
                m.node.clone().unwrap_or_else(|| "-".into()),
                m.restarts.to_string(),
                m.problem
                    .as_ref()
                    .map(|p| p.tag().to_string())
                    .unwrap_or_default(),
            ]);
            if let Some(p) = &m.problem {
                problems.push(format!("{}: {p}", m.pod));
            }
        }
        let seen = r.members_now.len() as u32;
        if r.exists && seen < r.members {
            rows.push(vec![
                r.id.clone(),
                format!("({} not created)", r.members - seen),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ]);
        }
    }
    s.push_str(&table(
        &[
            "ROLE", "MEMBER", "PHASE", "READY", "NODE", "RESTARTS", "PROBLEM",
        ],
        &rows,
    ));
    for p in problems {
        s.push_str(&format!("\n{p}\n"));
    }
    if !st.endpoints.is_empty() {
        s.push('\n');
        s.push_str(&endpoints::table(&st.endpoints));
    }
    s
}

pub fn delete(o: &DeleteOutcome) -> String {
    let mut s = format!(
        "{} in namespace {}: {} objects deleted\n",
        o.instance,
        o.namespace,
        o.deleted.len()
    );
    if !o.pvcs_deleted.is_empty() {
        s.push_str(&format!(
            "  volumes deleted: {}\n",
            o.pvcs_deleted.join(", ")
        ));
    }
    if !o.pvcs_kept.is_empty() {
        s.push_str(&format!(
            "  volumes kept (delete with --delete-data): {}\n",
            o.pvcs_kept.join(", ")
        ));
    }
    for k in &o.kept {
        s.push_str(&format!("  kept {k}\n"));
    }
    s
}
