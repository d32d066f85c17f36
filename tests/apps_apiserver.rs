//! `apps` against a real etcd + kube-apiserver on 127.0.0.1 (binaries from the artifact
//! mirror; skipped with the reason when it is absent). No kubelet, scheduler or
//! controller-manager run: a small fake StatefulSet controller in this test patches
//! `status` through the status subresource so readiness can be simulated, and pods are made
//! by hand where a member is needed. Real pods are tested by the lead in the lab.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use director_boot::apps::objects::Change;
use director_boot::apps::state::StoredInstance;
use director_boot::apps::{
    self, AppsError, DeployOptions, Grace, RenderError, ScaleRequest, WaitPolicy, manage,
};
use director_boot::catalog::{LABEL_INSTANCE, RenderedApp};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::TestApiServer;
use support::fixtures::busybox;

const NS: &str = "dbt-apps";

fn opts() -> DeployOptions {
    DeployOptions {
        wait: WaitPolicy {
            timeout: Duration::from_secs(60),
            poll: Duration::from_millis(300),
            grace: Grace {
                image_missing: Duration::from_secs(2),
                ..Grace::default()
            },
        },
        json: true,
        ..DeployOptions::default()
    }
}

/// (StatefulSet, "seen" | "ready", when).
type ControllerLog = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

/// Plays the StatefulSet controller's status part: 1 s after it first sees a StatefulSet
/// (or a new generation), it reports every replica ready. Namespaces in `paused` are left
/// alone. Records when it first saw and when it readied each StatefulSet.
struct FakeController {
    paused: Arc<Mutex<HashSet<String>>>,
    log: ControllerLog,
    task: tokio::task::JoinHandle<()>,
}

impl FakeController {
    fn start(client: Client) -> FakeController {
        let paused: Arc<Mutex<HashSet<String>>> = Arc::default();
        let log: ControllerLog = Arc::default();
        let (p, l) = (paused.clone(), log.clone());
        let task = tokio::spawn(async move {
            let api: Api<StatefulSet> = Api::all(client.clone());
            let mut first: HashMap<(String, i64), Instant> = HashMap::new();
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for s in list.items {
                        let ns = s.namespace().unwrap_or_default();
                        if p.lock().unwrap().contains(&ns) {
                            continue;
                        }
                        let name = s.name_any();
                        let generation = s.metadata.generation.unwrap_or(0);
                        let replicas = s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
                        let st = s.status.clone().unwrap_or_default();
                        let done = st.observed_generation == Some(generation)
                            && st.ready_replicas == Some(replicas)
                            && st.replicas == replicas;
                        if done {
                            continue;
                        }
                        let key = (format!("{ns}/{name}"), generation);
                        let seen = *first.entry(key.clone()).or_insert_with(|| {
                            l.lock()
                                .unwrap()
                                .push((key.0.clone(), "seen", Instant::now()));
                            Instant::now()
                        });
                        if seen.elapsed() < Duration::from_secs(1) {
                            continue;
                        }
                        let status = json!({"status": {
                            "observedGeneration": generation, "replicas": replicas,
                            "readyReplicas": replicas, "currentReplicas": replicas,
                            "updatedReplicas": replicas, "availableReplicas": replicas}});
                        let nsapi: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
                        if nsapi
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await
                            .is_ok()
                        {
                            l.lock().unwrap().push((key.0, "ready", Instant::now()));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        FakeController { paused, log, task }
    }

    fn pause(&self, ns: &str) {
        self.paused.lock().unwrap().insert(ns.to_string());
    }
    fn resume(&self, ns: &str) {
        self.paused.lock().unwrap().remove(ns);
    }
    fn first(&self, sts: &str, what: &str) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(n, w, _)| n == sts && *w == what)
            .map(|(_, _, t)| *t)
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fixture_render(
    calls: &AtomicUsize,
) -> impl Fn(&StoredInstance, &BTreeMap<String, u32>) -> Result<RenderedApp, RenderError> + '_ {
    move |stored, counts| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(busybox(
            &stored.instance,
            &stored.namespace,
            counts["worker"],
        ))
    }
}

async fn names<K>(client: &Client, ns: &str) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut v: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_against_a_real_apiserver() {
    let mut srv = match TestApiServer::start() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED apps_against_a_real_apiserver: {why}");
            return;
        }
    };
    let t0 = Instant::now();
    let client = srv.ready(Duration::from_secs(180)).await;
    eprintln!(
        "etcd + kube-apiserver ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    wrong_credentials_are_named(&srv).await;
    dry_run_rejects_before_anything_is_applied(&client).await;
    unknown_kind_is_named(&client).await;
    let ctl = FakeController::start(client.clone());
    deploy_waits_in_order_and_is_idempotent(&client, &ctl).await;
    cli_lists_and_refuses(&srv).await;
    diagnosis_ends_the_wait_and_status_shows_it(&client, &ctl).await;
    scale_refuses_out_of_range_and_mid_change(&client, &ctl).await;
    scale_up_and_down(&client).await;
    delete_keeps_data_unless_asked(&client).await;
    drop(ctl);
}

/// A client certificate from another CA, and a server CA that is not the server's.
async fn wrong_credentials_are_named(srv: &TestApiServer) {
    use director_boot::pki::{self, Member, PkiSpec};
    let other = tempfile::Builder::new()
        .prefix("dbt-otherpki-")
        .tempdir()
        .unwrap();
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let spec = PkiSpec {
        cluster_name: "other".into(),
        control_plane: vec![Member::new("localhost", lo)],
        etcd: vec![Member::new("localhost", lo)],
        nodes: vec![],
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        apiserver_extra_sans: vec![],
    };
    pki::ensure(other.path(), &spec).unwrap();
    let read = |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let ours = srv.dir().join("pki");
    let theirs = other.path();
    for (name, ca, cert_dir, want) in [
        (
            "foreign-client.conf",
            &ours,
            theirs,
            "refuses the credentials",
        ),
        (
            "foreign-ca.conf",
            &theirs.to_path_buf(),
            ours.as_path(),
            "cannot reach the API server",
        ),
    ] {
        let yaml = pki::kubeconfig(
            "dbtest",
            &srv.server,
            &read(ca, "ca.crt"),
            "admin",
            &read(cert_dir, "admin.crt"),
            &read(cert_dir, "admin.key"),
        )
        .unwrap();
        let path = other.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let err = match apps::client::connect_file(&path).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{name}: connected"),
        };
        eprintln!("{name}: {err}");
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&srv.server), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}

async fn dry_run_rejects_before_anything_is_applied(client: &Client) {
    let ns = "dbt-reject";
    let mut app = busybox("bad", ns, 2);
    app.roles[1].statefulset["spec"]["replicas"] = json!(-1);
    app.roles[0].member_services[0]["spec"]["ports"][0]["port"] = json!(70000);
    let err = apps::deploy(client, &app, &opts()).await.unwrap_err();
    eprintln!("dry-run rejection: {err}");
    let AppsError::DryRunRejected { rejections } = &err else {
        panic!("expected a dry-run rejection, got {err}");
    };
    let objects: Vec<&str> = rejections.iter().map(|r| r.object.as_str()).collect();
    assert_eq!(
        objects,
        vec![
            "Service dbt-reject/bad-master-0",
            "StatefulSet dbt-reject/bad-worker"
        ]
    );
    assert!(
        rejections[0].message.contains("spec.ports[0].port"),
        "{err}"
    );
    assert!(rejections[1].message.contains("spec.replicas"), "{err}");
    assert!(err.to_string().contains("nothing was applied"));
    // Nothing left: the namespace made for the dry run is deleted again (it stays
    // Terminating here only because no namespace controller runs).
    assert!(names::<StatefulSet>(client, ns).await.is_empty());
    assert!(names::<Service>(client, ns).await.is_empty());
    assert!(names::<ConfigMap>(client, ns).await.is_empty());
    let nsapi: Api<Namespace> = Api::all(client.clone());
    if let Some(n) = nsapi.get_opt(ns).await.unwrap() {
        assert!(
            n.metadata.deletion_timestamp.is_some(),
            "namespace {ns} kept"
        );
    }
}

async fn unknown_kind_is_named(client: &Client) {
    let mut app = busybox("odd", "dbt-odd", 1);
    app.shared.push(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}}),
    );
    let err = apps::deploy(client, &app, &opts()).await.unwrap_err();
    eprintln!("unknown kind: {err}");
    assert!(matches!(err, AppsError::UnknownKind { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("Widget w1: the API server does not serve example.com/v1 Widget"),
        "{err}"
    );
    let nsapi: Api<Namespace> = Api::all(client.clone());
    assert!(
        nsapi.get_opt("dbt-odd").await.unwrap().is_none(),
        "nothing applied"
    );
}

async fn deploy_waits_in_order_and_is_idempotent(client: &Client, ctl: &FakeController) {
    let app = busybox("demo", NS, 2);
    let t = Instant::now();
    let out = apps::deploy(client, &app, &opts()).await.unwrap();
    eprintln!(
        "first deploy: {:.1} s\n{}",
        t.elapsed().as_secs_f64(),
        apps::report::deploy(&out)
    );
    assert_eq!(out.applied.len(), 10, "{:?}", out.applied);
    assert!(
        out.applied.iter().all(|a| a.change == Change::Created),
        "{:?}",
        out.applied
    );
    let ready: Vec<(String, u32)> = out
        .roles
        .iter()
        .map(|r| (r.id.clone(), r.ready_count()))
        .collect();
    assert_eq!(
        ready,
        vec![("master".to_string(), 1), ("worker".to_string(), 2)]
    );
    // dependsOn: the worker StatefulSet appeared only after master was Ready.
    let master_ready = ctl.first("dbt-apps/demo-master", "ready").unwrap();
    let worker_seen = ctl.first("dbt-apps/demo-worker", "seen").unwrap();
    assert!(
        worker_seen > master_ready,
        "worker applied before master was Ready"
    );
    // Endpoints: one row per member; no pods exist, so no node address yet.
    assert_eq!(out.endpoints.len(), 3);
    assert!(out.endpoints.iter().all(|e| e.address.is_none()));

    // Field manager and the record.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let w = sts.get("demo-worker").await.unwrap();
    let managers: Vec<(String, String)> = w
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("director-boot".to_string(), "Apply".to_string())),
        "{managers:?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let rec = cms.get("demo-director-boot").await.unwrap();
    assert_eq!(
        rec.labels()
            .get("director-boot.io/state")
            .map(String::as_str),
        Some("instance")
    );
    assert_eq!(
        rec.labels().get(LABEL_INSTANCE).map(String::as_str),
        Some("demo")
    );
    let stored = director_boot::apps::state::parse(&rec).unwrap();
    assert_eq!(stored.app, "busybox");
    assert_eq!(stored.cluster_spec_yaml, app.cluster_spec_yaml);
    assert_eq!(stored.members()["worker"], 2);

    // Second deploy: nothing changes.
    let rv = w.resource_version();
    let again = apps::deploy(client, &app, &opts()).await.unwrap();
    assert!(!again.changed(), "{:?}", again.applied);
    assert!(again.applied.iter().all(|a| a.change == Change::Unchanged));
    assert_eq!(sts.get("demo-worker").await.unwrap().resource_version(), rv);

    // A key dropped from a Secret's stringData leaves the Secret (applied as data).
    let mut changed = app.clone();
    changed.shared[2]["stringData"] = json!({"password2": "also-not-real"});
    let out = apps::deploy(client, &changed, &opts()).await.unwrap();
    let secret_change: Vec<Change> = out
        .applied
        .iter()
        .filter(|a| a.object == "Secret dbt-apps/demo-secret")
        .map(|a| a.change)
        .collect();
    assert_eq!(secret_change, vec![Change::Configured]);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NS);
    let keys: Vec<String> = secrets
        .get("demo-secret")
        .await
        .unwrap()
        .data
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(keys, vec!["password2"]);
    apps::deploy(client, &app, &opts()).await.unwrap();

    let list = manage::list(client, None).await.unwrap();
    assert_eq!(
        apps::report::list(&list),
        "INSTANCE  NAMESPACE  APP      ROLES (READY/DESIRED)\ndemo      dbt-apps   busybox  master 1/1, worker 2/2\n"
    );
}

async fn cli_lists_and_refuses(srv: &TestApiServer) {
    let bin = env!("CARGO_BIN_EXE_director-boot");
    let kc = srv.kubeconfig.display().to_string();
    let state = srv.dir().join("state");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .args(["--kubeconfig", &kc])
            .env("DIRECTOR_BOOT_STATE_DIR", &state)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let out = run(&["apps", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["instance"], "demo");
    assert_eq!(
        v[0]["roles"][1],
        json!({"role": "worker", "ready": 2, "members": 2})
    );
    let out = run(&[
        "apps",
        "scale",
        "demo",
        "--role",
        "master",
        "--members",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("role master of demo takes exactly 1 member and cannot be scaled: 2 is above its maximum of 1"),
        "{err}"
    );
    let out = run(&["apps", "status", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no app instance nosuch in any namespace")
    );
}

/// A pod as the StatefulSet controller + scheduler would have made it, with its image missing.
async fn fake_member(client: &Client, ns: &str, instance: &str, role: &str, pod: &str, node: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "labels": {LABEL_INSTANCE: instance, "director-boot.io/role": role}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "localhost/director-boot/cassandra:4.1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
        "name": "app", "image": "localhost/director-boot/cassandra:4.1", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImageNeverPull",
            "message": "Container image \"localhost/director-boot/cassandra:4.1\" is not present with pull policy of Never"}}}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn remove_pod(client: &Client, ns: &str, pod: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete(pod, &dp).await.unwrap();
}

async fn diagnosis_ends_the_wait_and_status_shows_it(client: &Client, ctl: &FakeController) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "dbt-node1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let addr = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.5"}]}});
    nodes
        .patch_status("dbt-node1", &PatchParams::default(), &Patch::Merge(&addr))
        .await
        .unwrap();

    // A deploy whose only member cannot get its image ends at the grace, not the timeout.
    let ns = "dbt-broken";
    ctl.pause(ns);
    let app = busybox("broken", ns, 1);
    let c = client.clone();
    let maker = tokio::spawn(async move {
        let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
        while sts.get_opt("broken-master").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fake_member(&c, ns, "broken", "master", "broken-master-0", "dbt-node1").await;
    });
    let t = Instant::now();
    let err = apps::deploy(client, &app, &opts()).await.unwrap_err();
    let took = t.elapsed();
    maker.await.unwrap();
    eprintln!(
        "image-missing deploy ended after {:.1} s:\n{err}",
        took.as_secs_f64()
    );
    let AppsError::NotReady(nr) = &err else {
        panic!("expected NotReady, got {err}");
    };
    assert_eq!(nr.waiting_for, vec!["master".to_string()]);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        err.to_string().contains("broken-master-0 Pending on dbt-node1: image localhost/director-boot/cassandra:4.1 is not available on node dbt-node1 — build it and load it with `director-boot images load`"),
        "{err}"
    );
    // The worker (dependsOn master) was never applied.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert!(sts.get_opt("broken-worker").await.unwrap().is_none());

    // `apps status` shows the member, its node, the problem and the endpoint on the node.
    let st = manage::status(client, Some(ns), "broken").await.unwrap();
    let text = apps::report::status(&st);
    eprintln!("{text}");
    let m = &st.roles[0].members_now[0];
    assert_eq!(
        (m.pod.as_str(), m.node.as_deref()),
        ("broken-master-0", Some("dbt-node1"))
    );
    assert_eq!(m.problem.as_ref().map(|p| p.tag()), Some("image missing"));
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    let np = svc
        .get("broken-master-0")
        .await
        .unwrap()
        .spec
        .unwrap()
        .ports
        .unwrap()[0]
        .node_port
        .unwrap();
    let ep = &st.endpoints[0];
    assert_eq!(
        ep.address.as_deref(),
        Some(format!("127.0.0.5:{np}").as_str())
    );
    assert_eq!(
        ep.url.as_deref(),
        Some(format!("http://127.0.0.5:{np}/").as_str())
    );
    assert!(text.contains("image missing"), "{text}");

    remove_pod(client, ns, "broken-master-0").await;
    let out = manage::delete(client, Some(ns), "broken", true, opts().wait)
        .await
        .unwrap();
    assert!(
        out.deleted
            .contains(&"StatefulSet broken-master".to_string()),
        "{out:?}"
    );
    ctl.resume(ns);
}

async fn scale_refuses_out_of_range_and_mid_change(client: &Client, ctl: &FakeController) {
    let calls = AtomicUsize::new(0);
    let req = |role: &str, members: u32| ScaleRequest {
        instance: "demo".into(),
        namespace: None,
        role: role.into(),
        members,
        delete_data: false,
    };
    for (role, n, msg) in [
        (
            "master",
            2,
            "role master of demo takes exactly 1 member and cannot be scaled: 2 is above its maximum of 1",
        ),
        (
            "worker",
            5,
            "role worker of demo takes 1 to 4 members: 5 is above its maximum of 4",
        ),
        (
            "worker",
            0,
            "role worker of demo takes 1 to 4 members: 0 is below its minimum of 1",
        ),
    ] {
        let err = apps::scale(client, &req(role, n), fixture_render(&calls), &opts())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
    let err = apps::scale(client, &req("nope", 1), fixture_render(&calls), &opts())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "demo has no role nope (roles: master, worker)"
    );

    // A role mid-change (one worker not Ready) is not scaled.
    ctl.pause(NS);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let half = json!({"status": {"readyReplicas": 1, "availableReplicas": 1}});
    sts.patch_status("demo-worker", &PatchParams::default(), &Patch::Merge(&half))
        .await
        .unwrap();
    let err = apps::scale(client, &req("worker", 3), fixture_render(&calls), &opts())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "role worker of demo is mid-change (1 of 2 members ready); wait until it settles (`director-boot apps status demo`) and retry"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing re-rendered");
    assert_eq!(
        sts.get("demo-worker").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    ctl.resume(NS);
    let t = Instant::now();
    while sts
        .get("demo-worker")
        .await
        .unwrap()
        .status
        .unwrap()
        .ready_replicas
        != Some(2)
    {
        assert!(t.elapsed() < Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scale_up_and_down(client: &Client) {
    let calls = AtomicUsize::new(0);
    let req = |members: u32, delete_data: bool| ScaleRequest {
        instance: "demo".into(),
        namespace: Some(NS.into()),
        role: "worker".into(),
        members,
        delete_data,
    };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let svc: Api<Service> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let replicas = || async { sts.get("demo-worker").await.unwrap().spec.unwrap().replicas };

    let up = apps::scale(client, &req(3, false), fixture_render(&calls), &opts())
        .await
        .unwrap();
    eprintln!("{}", apps::report::scale(&up));
    assert_eq!((up.from, up.to), (2, 3));
    assert_eq!(up.added, vec!["demo-worker-2"]);
    assert_eq!(replicas().await, Some(3));
    assert!(svc.get_opt("demo-worker-2").await.unwrap().is_some());
    let meta = cms.get("demo-meta").await.unwrap();
    assert_eq!(meta.data.unwrap()["members"], "master=1\nworker=3\n");
    let stored = director_boot::apps::state::find(client, None, "demo")
        .await
        .unwrap();
    assert_eq!(stored.members()["worker"], 3);

    // The StatefulSet controller would have made the new member's volume.
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-demo-worker-2", "labels": {LABEL_INSTANCE: "demo"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();

    let down = apps::scale(client, &req(2, false), fixture_render(&calls), &opts())
        .await
        .unwrap();
    eprintln!("{}", apps::report::scale(&down));
    assert_eq!(down.removed, vec!["demo-worker-2"]);
    assert_eq!(down.services_deleted, vec!["demo-worker-2"]);
    assert_eq!(down.pvcs_kept, vec!["data-demo-worker-2"]);
    assert!(down.pvcs_deleted.is_empty());
    assert_eq!(replicas().await, Some(2));
    assert!(
        svc.get_opt("demo-worker-2").await.unwrap().is_none(),
        "highest member Service gone"
    );
    assert!(svc.get_opt("demo-worker-1").await.unwrap().is_some());
    assert!(
        pvcs.get_opt("data-demo-worker-2").await.unwrap().is_some(),
        "data kept"
    );

    // Again, with --delete-data.
    apps::scale(client, &req(3, false), fixture_render(&calls), &opts())
        .await
        .unwrap();
    let down = apps::scale(client, &req(2, true), fixture_render(&calls), &opts())
        .await
        .unwrap();
    assert_eq!(down.pvcs_deleted, vec!["data-demo-worker-2"]);
    assert!(pvcs.get_opt("data-demo-worker-2").await.unwrap().is_none());

    // Same count: no re-render, but a member Service an interrupted scale-down left behind
    // (ordinal label >= members) is removed.
    let stray: Service = serde_json::from_value(json!({
        "metadata": {"name": "demo-worker-3", "labels": {LABEL_INSTANCE: "demo",
            "director-boot.io/role": "worker", "director-boot.io/ordinal": "3"}},
        "spec": {"ports": [{"port": 8080}]}
    }))
    .unwrap();
    svc.create(&PostParams::default(), &stray).await.unwrap();
    let before = calls.load(Ordering::SeqCst);
    let same = apps::scale(client, &req(2, false), fixture_render(&calls), &opts())
        .await
        .unwrap();
    assert!(same.applied.is_empty());
    assert_eq!(same.services_deleted, vec!["demo-worker-3"]);
    assert!(svc.get_opt("demo-worker-1").await.unwrap().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), before);
    assert_eq!(before, 4);
}

async fn delete_keeps_data_unless_asked(client: &Client) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-demo-worker-0"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();

    let out = manage::delete(client, None, "demo", false, opts().wait)
        .await
        .unwrap();
    eprintln!("{}", apps::report::delete(&out));
    let mut deleted = out.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            "ConfigMap demo-director-boot",
            "ConfigMap demo-meta",
            "Secret demo-secret",
            "Service demo-hs",
            "Service demo-master-0",
            "Service demo-worker-0",
            "Service demo-worker-1",
            "StatefulSet demo-master",
            "StatefulSet demo-worker",
        ]
    );
    assert_eq!(out.pvcs_kept, vec!["data-demo-worker-0"]);
    assert_eq!(out.kept, vec!["Namespace dbt-apps"]);
    assert!(names::<StatefulSet>(client, NS).await.is_empty());
    assert!(names::<Service>(client, NS).await.is_empty());
    assert!(names::<ConfigMap>(client, NS).await.is_empty());
    assert_eq!(
        names::<PersistentVolumeClaim>(client, NS).await,
        vec!["data-demo-worker-0"]
    );
    assert!(manage::list(client, None).await.unwrap().is_empty());
    let err = manage::status(client, None, "demo").await.unwrap_err();
    assert_eq!(err.to_string(), "no app instance demo in any namespace");

    // Deploy again; delete with --delete-data takes the volume too.
    apps::deploy(client, &busybox("demo", NS, 2), &opts())
        .await
        .unwrap();
    let out = manage::delete(client, Some(NS), "demo", true, opts().wait)
        .await
        .unwrap();
    assert_eq!(out.pvcs_deleted, vec!["data-demo-worker-0"]);
    assert!(names::<PersistentVolumeClaim>(client, NS).await.is_empty());
}
