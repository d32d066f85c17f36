//! Deploy a rendered app: a server-side dry run of every object first, then the shared
//! objects, then each role once the roles it depends on are Ready; wait for every member,
//! run `configure` hooks in new members, and build the endpoints table.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::endpoints::{self, Endpoint};
use super::error::{AppsError, Rejection, api_message};
use super::hooks::{self, HookRun};
use super::objects::{Applied, Bound, Change, Resolver};
use super::observe::{RoleSnapshot, RoleTarget};
use super::state::{self, StoredInstance};
use super::watch::{WaitPolicy, Watcher};
use crate::catalog::{RenderedApp, RenderedRole};

/// How to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub wait: WaitPolicy,
    /// Wait for readiness (and run hooks, build endpoints); false = apply and return.
    pub wait_ready: bool,
    /// Progress hidden, for `--json`.
    pub json: bool,
    /// DNS domain of the cluster, for member FQDNs given to hooks.
    pub cluster_domain: String,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            wait: WaitPolicy::default(),
            wait_ready: true,
            json: false,
            cluster_domain: "cluster.local".to_string(),
        }
    }
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub app: String,
    pub instance: String,
    pub namespace: String,
    pub applied: Vec<Applied>,
    /// Last state of each role (empty when not waited for).
    pub roles: Vec<RoleSnapshot>,
    pub hooks: Vec<HookRun>,
    pub endpoints: Vec<Endpoint>,
    pub elapsed_secs: f64,
}

impl DeployOutcome {
    /// Whether any object was created or changed.
    pub fn changed(&self) -> bool {
        self.applied.iter().any(|a| a.change != Change::Unchanged)
    }
}

/// Every rendered object of an app, bound to its API, in apply order.
pub(crate) struct Plan {
    pub shared: Vec<Bound>,
    pub state: Bound,
    pub roles: Vec<Vec<Bound>>,
}

impl Plan {
    pub async fn bind(
        resolver: &mut Resolver,
        app: &RenderedApp,
        rec: &StoredInstance,
    ) -> Result<Plan, AppsError> {
        let ns = app.namespace.as_str();
        let mut shared = Vec::new();
        for (i, o) in app.shared.iter().enumerate() {
            shared.push(resolver.bind(o, "shared", i, ns).await?);
        }
        let cm = state::configmap(rec).map_err(|e| AppsError::BadObject {
            section: "state".into(),
            index: 0,
            reason: e.to_string(),
        })?;
        let state = resolver.bind(&cm, "state", 0, ns).await?;
        let mut roles = Vec::new();
        for r in &app.roles {
            roles.push(bind_role(resolver, r, ns).await?);
        }
        Ok(Plan {
            shared,
            state,
            roles,
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Bound> {
        self.shared
            .iter()
            .chain(std::iter::once(&self.state))
            .chain(self.roles.iter().flatten())
    }
}

/// A role's objects: StatefulSet, member Services, extras.
pub(crate) async fn bind_role(
    resolver: &mut Resolver,
    role: &RenderedRole,
    ns: &str,
) -> Result<Vec<Bound>, AppsError> {
    let section = format!("role {}", role.id);
    let objs = std::iter::once(&role.statefulset)
        .chain(role.member_services.iter())
        .chain(role.extra.iter());
    let mut out = Vec::new();
    for (i, o) in objs.enumerate() {
        out.push(resolver.bind(o, &section, i, ns).await?);
    }
    Ok(out)
}

/// Roles must come after the roles they depend on.
pub(crate) fn check_order(app: &RenderedApp) -> Result<(), AppsError> {
    let mut before = HashSet::new();
    for r in &app.roles {
        for d in &r.depends_on {
            if !before.contains(d.as_str()) {
                return Err(AppsError::BadDependency {
                    role: r.id.clone(),
                    dep: d.clone(),
                });
            }
        }
        before.insert(r.id.as_str());
    }
    Ok(())
}

/// Create the rendered Namespaces that do not exist yet, so namespaced objects can be
/// dry-run in them; returns the ones created (deleted again if the dry run fails).
async fn create_missing_namespaces(plan: &Plan) -> Result<Vec<&Bound>, AppsError> {
    let mut created = Vec::new();
    for b in plan.shared.iter().filter(|b| b.id.kind == "Namespace") {
        if b.live_version().await?.is_none() {
            b.apply(true).await.map_err(|e| AppsError::DryRunRejected {
                rejections: vec![Rejection {
                    object: b.id.to_string(),
                    message: api_message(&e),
                }],
            })?;
            b.apply(false)
                .await
                .map_err(|e| AppsError::api("create", b.id.to_string(), &e))?;
            created.push(b);
        }
    }
    Ok(created)
}

/// Dry-run every object; all rejections are reported together.
pub(crate) async fn dry_run<'a>(objs: impl Iterator<Item = &'a Bound>) -> Result<(), AppsError> {
    let mut rejections = Vec::new();
    for b in objs {
        if let Err(e) = b.apply(true).await {
            rejections.push(Rejection {
                object: b.id.to_string(),
                message: api_message(&e),
            });
        }
    }
    if rejections.is_empty() {
        Ok(())
    } else {
        Err(AppsError::DryRunRejected { rejections })
    }
}

/// Dry-run the whole plan (creating missing Namespaces first, removed again on rejection).
pub(crate) async fn preflight(plan: &Plan) -> Result<Vec<String>, AppsError> {
    let created = create_missing_namespaces(plan).await?;
    if let Err(e) = dry_run(plan.all()).await {
        for b in &created {
            let _ = b.delete().await;
        }
        return Err(e);
    }
    Ok(created.iter().map(|b| b.id.to_string()).collect())
}

/// `<pod>.<headless>.<ns>.svc.<domain>`, the stable DNS name of a member.
pub fn fqdn(pod: &str, headless: Option<&str>, namespace: &str, domain: &str) -> String {
    match headless {
        Some(h) => format!("{pod}.{h}.{namespace}.svc.{domain}"),
        None => format!("{pod}.{namespace}.pod.{domain}"),
    }
}

/// Run the role's `configure` hook in its Ready members that have not had it yet.
pub(crate) async fn configure(
    client: &Client,
    namespace: &str,
    role: &RenderedRole,
    snap: &RoleSnapshot,
    domain: &str,
    timeout: Duration,
) -> Result<Vec<HookRun>, AppsError> {
    let Some(argv) = &role.hooks.configure else {
        return Ok(Vec::new());
    };
    let nodes: Vec<String> = snap
        .current_members()
        .map(|m| fqdn(&m.pod, snap.headless_service.as_deref(), namespace, domain))
        .collect();
    let env = vec![
        ("DB_ROLE".to_string(), role.id.clone()),
        ("DB_NODES".to_string(), nodes.join(",")),
    ];
    let mut runs = Vec::new();
    for m in snap.current_members().filter(|m| m.ready && !m.configured) {
        runs.push(hooks::run(client, namespace, &m.pod, "configure", argv, &env, timeout).await?);
        hooks::mark_configured(client, namespace, &m.pod).await?;
    }
    Ok(runs)
}

fn target(role: &RenderedRole) -> RoleTarget {
    RoleTarget {
        id: role.id.clone(),
        statefulset: role
            .statefulset
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        members: role.members,
    }
}

/// Apply `app` and (unless `opts.wait_ready` is false) wait until every member is Ready.
pub async fn deploy(
    client: &Client,
    app: &RenderedApp,
    opts: &DeployOptions,
) -> Result<DeployOutcome, AppsError> {
    let started = Instant::now();
    check_order(app)?;
    let rec = state::record(app);
    let mut resolver = Resolver::new(client.clone());
    let plan = Plan::bind(&mut resolver, app, &rec).await?;
    let created_ns = preflight(&plan).await?;

    let mut applied = Vec::new();
    for b in plan.shared.iter().chain(std::iter::once(&plan.state)) {
        let mut a = b.apply_tracked().await?;
        if created_ns.contains(&a.object) {
            a.change = Change::Created;
        }
        applied.push(a);
    }

    let ns = app.namespace.as_str();
    let mut watcher = Watcher::new(client.clone(), ns, &app.instance, opts.wait, opts.json);
    let mut hook_runs = Vec::new();
    let mut configured: HashSet<String> = HashSet::new();
    let hook_timeout = |w: &Watcher| w.remaining().max(Duration::from_secs(30));
    for (role, bound) in app.roles.iter().zip(&plan.roles) {
        if opts.wait_ready && !role.depends_on.is_empty() {
            let snaps = watcher.until_ready(&role.depends_on).await?;
            for dep in app.roles.iter().filter(|r| role.depends_on.contains(&r.id)) {
                if configured.insert(dep.id.clone())
                    && let Some(s) = snaps.iter().find(|s| s.id == dep.id)
                {
                    let t = hook_timeout(&watcher);
                    hook_runs.extend(configure(client, ns, dep, s, &opts.cluster_domain, t).await?);
                }
            }
        }
        for b in bound {
            applied.push(b.apply_tracked().await?);
        }
        watcher.watch(target(role));
    }

    let mut roles = Vec::new();
    let mut endpoints = Vec::new();
    if opts.wait_ready {
        let ids: Vec<String> = app.roles.iter().map(|r| r.id.clone()).collect();
        roles = watcher.until_ready(&ids).await?;
        for role in &app.roles {
            if configured.insert(role.id.clone())
                && let Some(s) = roles.iter().find(|s| s.id == role.id)
            {
                let t = hook_timeout(&watcher);
                hook_runs.extend(configure(client, ns, role, s, &opts.cluster_domain, t).await?);
            }
        }
        endpoints = endpoints::fetch(client, ns, &app.instance, &rec.roles).await?;
    }
    Ok(DeployOutcome {
        app: app.app.clone(),
        instance: app.instance.clone(),
        namespace: app.namespace.clone(),
        applied,
        roles,
        hooks: hook_runs,
        endpoints,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::test_fixtures::busybox_app;

    #[test]
    fn dependencies_must_come_first() {
        let mut app = busybox_app("demo", "ns");
        assert!(check_order(&app).is_ok());
        app.roles.reverse();
        let e = check_order(&app).unwrap_err();
        assert_eq!(
            e.to_string(),
            "role worker depends on master, which is not a role rendered before it"
        );
    }

    #[test]
    fn member_fqdns() {
        assert_eq!(
            fqdn("spark-worker-1", Some("spark-hs"), "apps", "cluster.local"),
            "spark-worker-1.spark-hs.apps.svc.cluster.local"
        );
    }
}
