//! `apps scale`: change one role's member count the way KubeDirector does — bounds enforced,
//! refused while anything is mid-change, the highest ordinals leave first, `delnodes` hooks
//! run before anything is removed, `addnodes` after new members are Ready, and data (PVCs)
//! kept unless asked otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde::Serialize;
use serde_json::Value;

use super::apply::{self, DeployOptions, Plan, fqdn};
use super::endpoints::{self, Endpoint, member_service};
use super::error::{AppsError, is_not_found};
use super::hooks::{self, HookRun};
use super::objects::{Applied, Resolver};
use super::observe::{RoleSnapshot, RoleTarget, snapshot};
use super::state::{self, StoredInstance};
use super::watch::Watcher;
use crate::catalog::{LABEL_INSTANCE, LABEL_ORDINAL, LABEL_ROLE, RenderedApp};

/// Error type of the re-render callback (the catalog's own error, boxed).
pub type RenderError = Box<dyn std::error::Error + Send + Sync>;

/// What to scale.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    pub instance: String,
    /// None: wherever the instance is (it must be in one namespace).
    pub namespace: Option<String>,
    pub role: String,
    pub members: u32,
    /// Also delete the leaving members' PVCs.
    pub delete_data: bool,
}

/// What a scale did.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleOutcome {
    pub instance: String,
    pub namespace: String,
    pub role: String,
    pub from: u32,
    pub to: u32,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub services_deleted: Vec<String>,
    pub pvcs_deleted: Vec<String>,
    pub pvcs_kept: Vec<String>,
    pub applied: Vec<Applied>,
    pub hooks: Vec<HookRun>,
    pub endpoints: Vec<Endpoint>,
}

/// `asked` must be within the role's bounds; the error says which bound and why.
pub fn check_bounds(
    instance: &str,
    role: &str,
    min: u32,
    max: Option<u32>,
    asked: u32,
) -> Result<(), AppsError> {
    let range = match max {
        Some(m) if m == min => format!("exactly {min} member{}", if min == 1 { "" } else { "s" }),
        Some(m) => format!("{min} to {m} members"),
        None => format!("at least {min} member{}", if min == 1 { "" } else { "s" }),
    };
    let fixed = max == Some(min);
    if asked < min || max.is_some_and(|m| asked > m) {
        let bound = if asked < min {
            format!("below its minimum of {min}")
        } else {
            format!("above its maximum of {}", max.unwrap_or_default())
        };
        let tail = if fixed {
            " and cannot be scaled".to_string()
        } else {
            String::new()
        };
        return Err(AppsError::OutOfRange(format!(
            "role {role} of {instance} takes {range}{tail}: {asked} is {bound}"
        )));
    }
    Ok(())
}

/// Names of the PersistentVolumeClaim templates of a rendered StatefulSet.
fn claim_templates(sts: &Value) -> Vec<String> {
    sts.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/metadata/name")?.as_str().map(str::to_string))
        .collect()
}

/// Run a hook in each pod, in order, with the same environment.
async fn run_all(
    client: &Client,
    ns: &str,
    hook: &str,
    argv: &[String],
    pods: &[String],
    env: &[(String, String)],
    watcher: &Watcher,
) -> Result<Vec<HookRun>, AppsError> {
    let mut out = Vec::new();
    for p in pods {
        let t = watcher.remaining().max(std::time::Duration::from_secs(30));
        watcher.say(&format!("{hook} in {p}"));
        out.push(hooks::run(client, ns, p, hook, argv, env, t).await?);
    }
    Ok(out)
}

/// Ready members of each role, minus `except`.
fn ready_members(snaps: &[RoleSnapshot], role: &str, except: &[String]) -> Vec<String> {
    snaps
        .iter()
        .filter(|s| s.id == role)
        .flat_map(|s| s.current_members())
        .filter(|m| m.ready && !except.contains(&m.pod))
        .map(|m| m.pod.clone())
        .collect()
}

/// Scale one role; `render` re-renders the instance from its recorded cluster spec with the
/// given member count per role (the catalog's `prepare`).
pub async fn scale<F>(
    client: &Client,
    req: &ScaleRequest,
    render: F,
    opts: &DeployOptions,
) -> Result<ScaleOutcome, AppsError>
where
    F: Fn(&StoredInstance, &BTreeMap<String, u32>) -> Result<RenderedApp, RenderError>,
{
    let stored = state::find(client, req.namespace.as_deref(), &req.instance).await?;
    let ns = stored.namespace.clone();
    let rec = stored.role(&req.role)?.clone();
    check_bounds(
        &stored.instance,
        &rec.id,
        rec.min_members,
        rec.max_members,
        req.members,
    )?;

    let before = snapshot(client, &ns, &stored.targets()).await?;
    for s in &before {
        if let Some(detail) = s.mid_change() {
            return Err(AppsError::MidChange {
                instance: stored.instance.clone(),
                role: s.id.clone(),
                detail,
            });
        }
    }
    let snap = before
        .iter()
        .find(|s| s.id == rec.id)
        .ok_or_else(|| AppsError::NoRole {
            instance: stored.instance.clone(),
            role: rec.id.clone(),
            roles: String::new(),
        })?;
    let from = snap.spec_replicas.unwrap_or(0).max(0) as u32;
    let to = req.members;
    let mut outcome = ScaleOutcome {
        instance: stored.instance.clone(),
        namespace: ns.clone(),
        role: rec.id.clone(),
        from,
        to,
        added: Vec::new(),
        removed: Vec::new(),
        services_deleted: Vec::new(),
        pvcs_deleted: Vec::new(),
        pvcs_kept: Vec::new(),
        applied: Vec::new(),
        hooks: Vec::new(),
        endpoints: Vec::new(),
    };
    if from == to && rec.members == to {
        // Nothing to scale; Services an interrupted scale-down left behind still go.
        outcome.services_deleted = delete_member_services(
            client,
            &ns,
            &stored.instance,
            &rec.id,
            &rec.statefulset,
            to,
            to,
        )
        .await?;
        outcome.endpoints = endpoints::fetch(client, &ns, &stored.instance, &stored.roles).await?;
        return Ok(outcome);
    }

    // Re-render with the new count and check it is what was asked for.
    let mut counts = stored.members();
    counts.insert(rec.id.clone(), to);
    let app = render(&stored, &counts).map_err(|e| AppsError::Render {
        instance: stored.instance.clone(),
        role: rec.id.clone(),
        members: to,
        message: e.to_string(),
    })?;
    let mismatch = |problem: String| AppsError::RenderMismatch {
        instance: stored.instance.clone(),
        problem,
    };
    if app.instance != stored.instance || app.namespace != ns {
        return Err(mismatch(format!(
            "is {}/{}, not {ns}/{}",
            app.namespace, app.instance, stored.instance
        )));
    }
    let role_idx = app
        .roles
        .iter()
        .position(|r| r.id == rec.id)
        .ok_or_else(|| mismatch(format!("has no role {}", rec.id)))?;
    let new_role = &app.roles[role_idx];
    if new_role.members != to {
        return Err(mismatch(format!(
            "has {} members in role {}, not {to}",
            new_role.members, rec.id
        )));
    }
    check_bounds(
        &stored.instance,
        &rec.id,
        new_role.min_members,
        new_role.max_members,
        to,
    )?;
    let new_rec = state::record(&app);

    // Dry-run what will be applied: shared objects, the record, this role's objects.
    let mut resolver = Resolver::new(client.clone());
    let plan = Plan::bind(&mut resolver, &app, &new_rec).await?;
    let role_objs = &plan.roles[role_idx];
    apply::dry_run(
        plan.shared
            .iter()
            .chain(std::iter::once(&plan.state))
            .chain(role_objs.iter()),
    )
    .await?;

    let mut watcher = Watcher::new(client.clone(), &ns, &stored.instance, opts.wait, opts.json);
    let sts = &rec.statefulset;
    let headless = snap.headless_service.as_deref();
    let domain = opts.cluster_domain.as_str();
    let pod = |o: u32| format!("{sts}-{o}");

    if to < from {
        let leaving: Vec<String> = (to..from).map(pod).collect();
        let leaving_fqdns: Vec<String> = leaving
            .iter()
            .map(|p| fqdn(p, headless, &ns, domain))
            .collect();
        let env = |self_: bool| {
            let mut e = vec![
                ("DB_NODES".to_string(), leaving_fqdns.join(",")),
                ("DB_ROLE".to_string(), rec.id.clone()),
            ];
            if self_ {
                e.push(("DB_SELF".to_string(), "1".to_string()));
            }
            e
        };
        // delnodes first, while every member is still there: the leaving members (drain,
        // e.g. `nodetool decommission`), then the survivors of every role that asks for it.
        if let Some(argv) = &rec.hooks.delnodes {
            let present: Vec<String> = ready_members(&before, &rec.id, &[])
                .into_iter()
                .filter(|p| leaving.contains(p))
                .collect();
            outcome.hooks.extend(
                run_all(
                    client,
                    &ns,
                    "delnodes",
                    argv,
                    &present,
                    &env(true),
                    &watcher,
                )
                .await?,
            );
        }
        for r in &stored.roles {
            if let Some(argv) = &r.hooks.delnodes {
                let survivors = ready_members(&before, &r.id, &leaving);
                outcome.hooks.extend(
                    run_all(
                        client,
                        &ns,
                        "delnodes",
                        argv,
                        &survivors,
                        &env(false),
                        &watcher,
                    )
                    .await?,
                );
            }
        }
        for b in plan
            .shared
            .iter()
            .chain(std::iter::once(&plan.state))
            .chain(role_objs)
        {
            outcome.applied.push(b.apply_tracked().await?);
        }
        watcher.watch(RoleTarget {
            id: rec.id.clone(),
            statefulset: sts.clone(),
            members: to,
        });
        watcher.until_gone(&leaving).await?;
        outcome.services_deleted =
            delete_member_services(client, &ns, &stored.instance, &rec.id, sts, to, from).await?;
        let (deleted, kept) = leaving_claims(
            client,
            &ns,
            &claim_templates(&new_role.statefulset),
            &leaving,
            req.delete_data,
        )
        .await?;
        outcome.pvcs_deleted = deleted;
        outcome.pvcs_kept = kept;
        outcome.removed = leaving;
        watcher.until_ready(std::slice::from_ref(&rec.id)).await?;
    } else {
        for b in plan
            .shared
            .iter()
            .chain(std::iter::once(&plan.state))
            .chain(role_objs)
        {
            outcome.applied.push(b.apply_tracked().await?);
        }
        watcher.watch(RoleTarget {
            id: rec.id.clone(),
            statefulset: sts.clone(),
            members: to,
        });
        let after = watcher.until_ready(std::slice::from_ref(&rec.id)).await?;
        let added: Vec<String> = (from..to).map(pod).collect();
        if let Some(s) = after.iter().find(|s| s.id == rec.id) {
            let t = watcher.remaining().max(std::time::Duration::from_secs(30));
            outcome
                .hooks
                .extend(apply::configure(client, &ns, new_role, s, domain, t).await?);
        }
        let added_fqdns: Vec<String> = added
            .iter()
            .map(|p| fqdn(p, headless, &ns, domain))
            .collect();
        let env = vec![
            ("DB_NODES".to_string(), added_fqdns.join(",")),
            ("DB_ROLE".to_string(), rec.id.clone()),
        ];
        // addnodes in the members that were there before (the survivors), per role.
        for r in &new_rec.roles {
            if let Some(argv) = &r.hooks.addnodes {
                let survivors = ready_members(&before, &r.id, &added);
                outcome.hooks.extend(
                    run_all(client, &ns, "addnodes", argv, &survivors, &env, &watcher).await?,
                );
            }
        }
        outcome.added = added;
    }
    outcome.endpoints = endpoints::fetch(client, &ns, &stored.instance, &new_rec.roles).await?;
    Ok(outcome)
}

/// Delete the member Services of ordinals `to..from`, found by name and by the ordinal label
/// (so Services left behind by an interrupted scale go too).
async fn delete_member_services(
    client: &Client,
    ns: &str,
    instance: &str,
    role: &str,
    sts: &str,
    to: u32,
    from: u32,
) -> Result<Vec<String>, AppsError> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let sel = format!("{LABEL_INSTANCE}={instance},{LABEL_ROLE}={role}");
    let labelled = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| AppsError::api("list Services of", format!("{instance} role {role}"), &e))?;
    let mut names: Vec<String> = (to..from).map(|o| member_service(sts, o)).collect();
    for s in labelled.items {
        let ord = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_ORDINAL))
            .and_then(|o| o.parse::<u32>().ok());
        if let (Some(o), Some(name)) = (ord, s.metadata.name)
            && o >= to
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    let mut deleted = Vec::new();
    for n in names {
        match api.delete(&n, &DeleteParams::background()).await {
            Ok(_) => deleted.push(n),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(AppsError::api("delete", format!("Service {ns}/{n}"), &e)),
        }
    }
    Ok(deleted)
}

/// The PVCs of leaving members (`<template>-<pod>`): deleted with `delete_data`, else listed
/// as kept.
async fn leaving_claims(
    client: &Client,
    ns: &str,
    templates: &[String],
    leaving: &[String],
    delete_data: bool,
) -> Result<(Vec<String>, Vec<String>), AppsError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let (mut deleted, mut kept) = (Vec::new(), Vec::new());
    for t in templates {
        for p in leaving {
            let name = format!("{t}-{p}");
            let exists = api
                .get_opt(&name)
                .await
                .map_err(|e| {
                    AppsError::api("read", format!("PersistentVolumeClaim {ns}/{name}"), &e)
                })?
                .is_some();
            if !exists {
                continue;
            }
            if delete_data {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted.push(name),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(AppsError::api(
                            "delete",
                            format!("PersistentVolumeClaim {ns}/{name}"),
                            &e,
                        ));
                    }
                }
            } else {
                kept.push(name);
            }
        }
    }
    Ok((deleted, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds_errors_are_precise() {
        assert!(check_bounds("spark", "worker", 1, None, 7).is_ok());
        assert_eq!(
            check_bounds("spark", "master", 1, Some(1), 2)
                .unwrap_err()
                .to_string(),
            "role master of spark takes exactly 1 member and cannot be scaled: 2 is above its maximum of 1"
        );
        assert_eq!(
            check_bounds("cassandra", "seed", 2, None, 1)
                .unwrap_err()
                .to_string(),
            "role seed of cassandra takes at least 2 members: 1 is below its minimum of 2"
        );
        assert_eq!(
            check_bounds("symphony", "compute", 0, Some(64), 65)
                .unwrap_err()
                .to_string(),
            "role compute of symphony takes 0 to 64 members: 65 is above its maximum of 64"
        );
        assert!(check_bounds("symphony", "compute", 0, Some(64), 0).is_ok());
    }

    #[test]
    fn claim_template_names() {
        let sts = json!({"spec": {"volumeClaimTemplates": [
            {"metadata": {"name": "data"}}, {"metadata": {"name": "logs"}}]}});
        assert_eq!(claim_templates(&sts), vec!["data", "logs"]);
        assert!(claim_templates(&json!({"spec": {}})).is_empty());
    }
}
