//! Catalog tests: the shipped entries validate and render as documented; bad apps and bad
//! overrides are rejected with exact messages naming file, line, column and field.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

// ---- fixtures ----------------------------------------------------------------------------

const APP: &str = "\
name: demo
image: localhost/demo:1
roles:
  - id: master
    members: {min: 1, max: 1}
    services:
      - {id: ui, port: 8080, scheme: http, dashboard: true}
    start: start.sh
  - id: worker
    members: {min: 1, max: 4}
    dependsOn: [master]
    services:
      - {id: ui, port: 8081, scheme: http}
    start: start.sh
";

const CLUSTER: &str = "\
roles:
  master: {members: 1}
  worker: {members: 2}
";

const START: &str = "#!/bin/bash\necho {{ instance }} {{ role.id }}\n";

/// An app directory `<tmp>/demo` with these files.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new(app: &str, cluster: Option<&str>, files: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("app.yaml"), app).unwrap();
        if let Some(c) = cluster {
            std::fs::write(dir.join("cluster.yaml"), c).unwrap();
        }
        std::fs::write(dir.join("start.sh"), START).unwrap();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Fixture { tmp }
    }

    fn demo(app: &str) -> Fixture {
        Fixture::new(app, Some(CLUSTER), &[])
    }

    fn path(&self) -> String {
        format!("{}/demo", self.tmp.path().display())
    }

    /// Problems as printed, with the temporary directory shown as `$D`.
    fn shown(&self, e: CatalogError) -> Vec<String> {
        let tmp = self.tmp.path().display().to_string();
        match e {
            CatalogError::Invalid { problems, .. } => problems
                .iter()
                .map(|p| p.to_string().replace(&tmp, "$D"))
                .collect(),
            other => vec![other.to_string().replace(&tmp, "$D")],
        }
    }

    fn validate(&self) -> Vec<String> {
        match validate(&self.path()) {
            Ok(_) => Vec::new(),
            Err(e) => self.shown(e),
        }
    }

    fn prepare(&self, ov: &Overrides) -> Vec<String> {
        match prepare(&self.path(), ov) {
            Ok(_) => Vec::new(),
            Err(e) => self.shown(e),
        }
    }
}

fn sets(list: &[&str]) -> Overrides {
    Overrides {
        sets: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replacen(from, to, 1)
}

// ---- rejections: the app -----------------------------------------------------------------

#[test]
fn the_fixture_itself_is_valid() {
    let f = Fixture::demo(APP);
    assert_eq!(f.validate(), Vec::<String>::new());
    assert_eq!(f.prepare(&Overrides::default()), Vec::<String>::new());
}

#[test]
fn rejects_an_unknown_role_in_depends_on() {
    let f = Fixture::demo(&replace(APP, "dependsOn: [master]", "dependsOn: [mastr]"));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:11:17: roles[1].dependsOn[0]: unknown role \"mastr\" (roles: master, worker; did you mean \"master\"?)"
        ]
    );
}

#[test]
fn rejects_a_role_depending_on_itself() {
    let f = Fixture::demo(&replace(APP, "dependsOn: [master]", "dependsOn: [worker]"));
    assert_eq!(
        f.validate(),
        ["$D/demo/app.yaml:11:17: roles[1].dependsOn[0]: role \"worker\" depends on itself"]
    );
}

#[test]
fn rejects_a_dependency_cycle_and_names_it() {
    let app = replace(
        APP,
        "    members: {min: 1, max: 1}\n",
        "    members: {min: 1, max: 1}\n    dependsOn: [worker]\n",
    );
    let f = Fixture::demo(&app);
    assert_eq!(
        f.validate(),
        ["$D/demo/app.yaml:6:16: roles[0].dependsOn: dependency cycle: master -> worker -> master"]
    );
}

#[test]
fn rejects_a_port_out_of_range() {
    let f = Fixture::demo(&replace(APP, "port: 8081", "port: 80810"));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:13:24: roles[1].services[0].port: expected a port number in 1..=65535, found `80810`"
        ]
    );
}

#[test]
fn rejects_a_port_that_is_not_a_number() {
    let f = Fixture::demo(&replace(APP, "port: 8081", "port: http"));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:13:24: roles[1].services[0].port: expected a port number in 1..=65535, found `http`"
        ]
    );
}

#[test]
fn rejects_a_port_used_twice_in_a_role() {
    let f = Fixture::demo(&replace(
        APP,
        "      - {id: ui, port: 8081, scheme: http}\n",
        "      - {id: ui, port: 8081, scheme: http}\n      - {id: rpc, port: 8081}\n",
    ));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:14:25: roles[1].services[1].port: port 8081 is already used by services[0] (\"ui\") of role \"worker\""
        ]
    );
}

#[test]
fn rejects_duplicate_role_and_service_ids() {
    let app = replace(APP, "  - id: worker", "  - id: master");
    let app = replace(
        &app,
        "      - {id: ui, port: 8081, scheme: http}\n",
        "      - {id: ui, port: 8081, scheme: http}\n      - {id: ui, port: 9000}\n",
    );
    let f = Fixture::demo(&app);
    let problems = f.validate();
    assert!(
        problems.contains(
            &"$D/demo/app.yaml:9:9: roles[1].id: duplicate role id \"master\" (also roles[0])"
                .to_string()
        ),
        "{problems:#?}"
    );
    assert!(
        problems.contains(
            &"$D/demo/app.yaml:14:14: roles[1].services[1].id: duplicate service id \"ui\" in role \"master\" (also services[0])"
                .to_string()
        ),
        "{problems:#?}"
    );
}

#[test]
fn rejects_min_above_max() {
    let f = Fixture::new(
        &replace(APP, "{min: 1, max: 4}", "{min: 5, max: 4}"),
        None,
        &[],
    );
    assert_eq!(
        f.validate(),
        ["$D/demo/app.yaml:10:15: roles[1].members: min 5 is greater than max 4"]
    );
}

#[test]
fn rejects_role_ids_that_are_not_dns_labels() {
    let f = Fixture::demo(&replace(APP, "id: worker", "id: Worker_1"));
    let problems = f.validate();
    assert_eq!(
        problems[0],
        "$D/demo/app.yaml:9:9: roles[1].id: `Worker_1` must start with a lowercase letter (a role id is a DNS label)"
    );
}

#[test]
fn rejects_names_too_long_for_kubernetes() {
    let long = "w".repeat(50);
    let f = Fixture::new(&APP.replace("worker", &long), None, &[]);
    assert_eq!(
        f.validate(),
        [format!(
            "$D/demo/app.yaml:9:9: roles[1].id: the StatefulSet name `demo-{long}` (the app name + role) is 55 characters long; at most 52 fit (Kubernetes adds a revision hash in a label)"
        )]
    );
}

#[test]
fn rejects_a_dashboard_that_is_not_http() {
    let f = Fixture::demo(&replace(
        APP,
        "{id: ui, port: 8081, scheme: http}",
        "{id: ui, port: 8081, scheme: spark, dashboard: true}",
    ));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:13:56: roles[1].services[0].dashboard: only an http or https service can be a dashboard (scheme is `spark`)"
        ]
    );
}

#[test]
fn rejects_a_probe_on_an_undeclared_port() {
    let f = Fixture::demo(&replace(
        APP,
        "    start: start.sh\n  - id: worker",
        "    start: start.sh\n    readiness: {httpGet: {path: /json/, port: 8090}}\n  - id: worker",
    ));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:9:47: roles[0].readiness.httpGet.port: port `8090` is not one of the role's services (ui 8080)"
        ]
    );
}

#[test]
fn rejects_missing_start_scripts_and_hooks() {
    let app = replace(
        APP,
        "    start: start.sh\n  - id: worker",
        "    start: master.sh\n    hooks: {delnodes: hooks/del.sh}\n  - id: worker",
    );
    let f = Fixture::demo(&app);
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:8:12: roles[0].start: no file `master.sh` in $D/demo",
            "$D/demo/app.yaml:9:23: roles[0].hooks.delnodes: no file `hooks/del.sh` in $D/demo",
        ]
    );
}

#[test]
fn maps_template_errors_to_the_template_file() {
    let f = Fixture::new(
        APP,
        Some(CLUSTER),
        &[("start.sh", "#!/bin/bash\necho {{ roles.wrker.fqdns[0] }}\n")],
    );
    let problems = f.validate();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "$D/demo/start.sh: does not render for role \"master\" (members: master=1, worker=2): Failed to render '$D/demo/start.sh'"
        ),
        "{problems:#?}"
    );
    assert!(problems[0].contains("roles.wrker.fqdns"), "{problems:#?}");
}

#[test]
fn rejects_templates_that_do_not_parse() {
    let f = Fixture::new(APP, Some(CLUSTER), &[("start.sh", "echo {{ instance \n")]);
    let problems = f.validate();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0]
            .starts_with("$D/demo/start.sh: does not parse: Failed to parse '$D/demo/start.sh'"),
        "{problems:#?}"
    );
}

#[test]
fn rejects_secrets_used_but_not_declared() {
    let f = Fixture::demo(&replace(
        APP,
        "    start: start.sh\n  - id: worker",
        "    start: start.sh\n    secrets: [{id: tokn, env: TOKEN}]\n  - id: worker",
    ));
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:9:20: roles[0].secrets[0].id: secret \"tokn\" is not declared in the app's `secrets` (declared: none)"
        ]
    );
}

#[test]
fn rejects_unknown_capabilities_and_bad_images() {
    let app = replace(
        APP,
        "image: localhost/demo:1",
        "image: localhost/Demo:1\ncapabilities: [SYS_NICE, CAP_IPC_LOCK, NET_ADMN]\npodSecurity: privileged",
    );
    let f = Fixture::demo(&app);
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:2:8: image: `localhost/Demo:1` is not an image reference: `Demo` is not a valid repository path component: lowercase letters and digits, separated by `.`, `_`, `__` or `-`",
            "$D/demo/app.yaml:3:26: capabilities[1]: write `IPC_LOCK`: Kubernetes leaves out the `CAP_` prefix",
            "$D/demo/app.yaml:3:40: capabilities[2]: `NET_ADMN` is not a Linux capability (did you mean `NET_ADMIN`?)",
        ]
    );
}

#[test]
fn capabilities_beyond_baseline_need_pod_security_privileged() {
    let app = replace(
        APP,
        "image: localhost/demo:1",
        "image: localhost/demo:1\ncapabilities: [SYS_NICE, CHOWN]",
    );
    assert_eq!(
        Fixture::demo(&app).validate(),
        [
            "$D/demo/app.yaml:3:16: capabilities[0]: Pod Security level baseline does not admit adding SYS_NICE: declare `podSecurity: privileged` at the top of app.yaml (deploy-app then labels the app's namespace with it)"
        ]
    );
    let ok = replace(
        APP,
        "image: localhost/demo:1",
        "image: localhost/demo:1\ncapabilities: [SYS_NICE, CHOWN]\npodSecurity: privileged",
    );
    // Declared, but its default spec would put it into `default`, which stays baseline.
    assert_eq!(
        Fixture::demo(&ok).validate(),
        [
            "$D/demo/cluster.yaml:1:1: namespace: demo needs Pod Security level privileged, which the `default` namespace does not allow: deploy it into its own namespace (`--namespace demo`)"
        ]
    );
    let bad_level = replace(
        APP,
        "image: localhost/demo:1",
        "image: localhost/demo:1\npodSecurity: lax",
    );
    assert!(
        Fixture::demo(&bad_level)
            .validate()
            .iter()
            .any(|l| l.contains("podSecurity")),
    );
}

#[test]
fn rejects_unknown_and_ill_typed_fields_all_at_once() {
    let app = replace(APP, "    dependsOn: [master]", "    dependson: [master]");
    let app = replace(&app, "{min: 1, max: 1}", "{min: one, max: 1}");
    let f = Fixture::demo(&app);
    assert_eq!(
        f.validate(),
        [
            "$D/demo/app.yaml:5:20: roles[0].members.min: expected a member count in 0..=10000, found `one`",
            "$D/demo/app.yaml:11:5: roles[1].dependson: unknown field (did you mean `dependsOn`?); valid fields here: id, label, image, members, dependsOn, services, start, hooks, readiness, liveness, persistDirs, env, capabilities, secrets, podManagementPolicy, terminationGracePeriodSeconds, serviceAccount",
        ]
    );
}

// ---- rejections: the cluster spec and overrides --------------------------------------------

#[test]
fn rejects_default_members_outside_min_max() {
    let f = Fixture::new(APP, Some("roles:\n  worker: {members: 5}\n"), &[]);
    assert_eq!(
        f.validate(),
        [
            "$D/demo/cluster.yaml:2:21: roles.worker.members: 5 is above the role's maximum of 4 (members.max at $D/demo/app.yaml:10:28)"
        ]
    );
}

#[test]
fn rejects_set_members_outside_min_max_naming_the_override() {
    let f = Fixture::demo(APP);
    assert_eq!(
        f.prepare(&sets(&["worker.members=9"])),
        [
            "--set worker.members=9: roles.worker.members: 9 is above the role's maximum of 4 (members.max at $D/demo/app.yaml:10:28)"
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["roles.worker.members=0"])),
        [
            "--set roles.worker.members=0: roles.worker.members: 0 is below the role's minimum of 1 (members.min at $D/demo/app.yaml:10:20)"
        ]
    );
}

#[test]
fn rejects_cluster_file_members_outside_min_max_naming_the_file() {
    let f = Fixture::demo(APP);
    let file = f.tmp.path().join("mine.yaml");
    std::fs::write(&file, "roles:\n  master:\n    members: 2\n").unwrap();
    let ov = Overrides {
        cluster: Some(ClusterInput::File(file)),
        ..Default::default()
    };
    assert_eq!(
        f.prepare(&ov),
        [
            "$D/mine.yaml:3:14: roles.master.members: 2 is above the role's maximum of 1 (members.max at $D/demo/app.yaml:5:28)"
        ]
    );
}

#[test]
fn rejects_set_paths_that_name_nothing() {
    let f = Fixture::demo(APP);
    assert_eq!(
        f.prepare(&sets(&["wrker.members=3"])),
        [
            "--set wrker.members=3: no role \"wrker\" (roles: master, worker; did you mean \"worker\"?)"
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["worker.membrs=3"])),
        [
            "--set worker.membrs=3: roles.worker.membrs: unknown field (did you mean `members`?); valid fields here: members, image, resources, storage, nodePorts, env"
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["namespce=x", "worker.members"])),
        [
            "--set namespce=x: no setting \"namespce\" (settings: instance, namespace, serviceType, acceptLicense; roles take <role>.<field>; did you mean \"namespace\"?)",
            "--set worker.members: expected PATH=VALUE, like worker.members=3",
        ]
    );
}

#[test]
fn rejects_bad_quantities_in_resources_and_storage() {
    let f = Fixture::new(
        APP,
        Some(
            "roles:\n  worker:\n    members: 2\n    resources:\n      requests: {cpu: 2, memroy: 1GB}\n      limits: {cpu: 500m}\n    storage: {size: 10GB}\n",
        ),
        &[],
    );
    assert_eq!(
        f.validate(),
        [
            "$D/demo/cluster.yaml:5:23: roles.worker.resources.requests.cpu: request 2 is more than the limit 500m",
            "$D/demo/cluster.yaml:5:26: roles.worker.resources.requests.memroy: unknown resource `memroy` (did you mean `memory`?): use cpu, memory, ephemeral-storage or a vendor/name",
            "$D/demo/cluster.yaml:7:21: roles.worker.storage.size: `10GB` is not a Kubernetes quantity like 500m, 2, 512Mi or 20Gi",
        ]
    );
}

#[test]
fn rejects_pinned_node_ports_outside_the_range() {
    let f = Fixture::demo(APP);
    assert_eq!(
        f.prepare(&sets(&["master.nodePorts.ui=8080"])),
        [
            "--set master.nodePorts.ui=8080: roles.master.nodePorts.ui: expected a NodePort in 30000..=32767, found `8080`"
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["worker.nodePorts.ui=32767"])),
        [
            "--set worker.nodePorts.ui=32767: roles.worker.nodePorts.ui: 32767 pins one port per member (32767..=32768 for 2 members), past the NodePort range's end 32767"
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["worker.nodePorts.uii=31000"])),
        [
            "--set worker.nodePorts.uii=31000: roles.worker.nodePorts.uii: role \"worker\" has no service \"uii\" (services: ui; did you mean \"ui\"?)"
        ]
    );
}

#[test]
fn requires_declared_secrets_and_the_license_when_deploying() {
    let app = replace(
        APP,
        "roles:\n",
        "license: {name: Demo EULA, mustAccept: true}\nsecrets:\n  - {id: entitlement, description: the entitlement file, required: true}\nroles:\n",
    );
    let f = Fixture::demo(&app);
    // `catalog validate` does not need what only the deploying user has.
    assert_eq!(f.validate(), Vec::<String>::new());
    assert_eq!(
        f.prepare(&sets(&["secrets.entitelment=abc"])),
        [
            "$D/demo/cluster.yaml: secrets.entitlement: required by the app (the entitlement file): give it with --set secrets.entitlement.file=PATH (or secrets.entitlement=VALUE, or `existing: true` for a Secret already in the namespace)",
            "$D/demo/cluster.yaml: acceptLicense: the app is under Demo EULA, which must be accepted: read it, then --set acceptLicense=true",
            "--set secrets.entitelment=<hidden>: secrets.entitelment: the app declares no secret \"entitelment\" (secrets: entitlement; did you mean \"entitlement\"?)",
        ]
    );
    assert_eq!(
        f.prepare(&sets(&["secrets.entitlement=abc", "acceptLicense=true"])),
        Vec::<String>::new()
    );
}

#[test]
fn rejects_bad_instance_and_namespace_names() {
    let f = Fixture::demo(APP);
    let ov = Overrides {
        namespace: Some("kube-system".into()),
        instance: Some("My_App".into()),
        ..Default::default()
    };
    assert_eq!(
        f.prepare(&ov),
        [
            "--instance My_App: instance: `My_App` must start with a lowercase letter (an instance name is a DNS label)",
            "--namespace kube-system: namespace: `kube-system` belongs to Kubernetes itself: pick another namespace",
        ]
    );
}

#[test]
fn unknown_apps_get_a_suggestion() {
    let e = prepare("sprak", &Overrides::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("no app \"sprak\" in the catalog (did you mean \"spark\"?); apps: "),
        "{e}"
    );
    let e = prepare("./no/such/dir", &Overrides::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "./no/such/dir is not an app directory: it has no app.yaml"
    );
}

// ---- the shipped catalog -------------------------------------------------------------------

#[test]
fn every_shipped_app_validates() {
    let apps = embedded_apps();
    assert_eq!(
        apps,
        ["cassandra", "hadoop", "jupyter", "spark", "symphony"]
    );
    for app in apps {
        if let Err(e) = validate(&app) {
            panic!("{app}: {e}");
        }
    }
}

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// A shared object by kind and name.
fn shared<'a>(r: &'a RenderedApp, kind: &str, name: &str) -> &'a Value {
    r.shared
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(&r.shared)))
}

fn env_of(sts: &Value) -> Vec<(String, String)> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("<from>")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn spark_renders_the_documented_objects() {
    let r = prepare("spark", &Overrides::default()).unwrap();
    assert_eq!(
        (r.app.as_str(), r.instance.as_str(), r.namespace.as_str()),
        ("spark", "spark", "default")
    );
    assert_eq!(
        kinds(&r.shared),
        [
            "Secret/spark-jupyter-token",
            "ConfigMap/spark-membership",
            "ConfigMap/spark-scripts",
            "Service/spark",
            "ServiceAccount/spark-spark",
            "Role/spark-spark-driver",
            "RoleBinding/spark-spark-driver",
        ]
    );
    let headless = &r.shared[3]["spec"];
    assert_eq!(headless["clusterIP"], "None");
    assert_eq!(headless["publishNotReadyAddresses"], true);

    let ids: Vec<&str> = r.roles.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["master", "worker", "jupyter"]);
    let master = &r.roles[0];
    assert_eq!(
        (master.members, master.min_members, master.max_members),
        (1, 1, Some(1))
    );
    let worker = &r.roles[1];
    assert_eq!(
        (worker.members, worker.min_members, worker.max_members),
        (2, 1, Some(64))
    );
    assert_eq!(worker.depends_on, ["master"]);
    assert_eq!(
        kinds(&worker.member_services),
        ["Service/spark-worker-0", "Service/spark-worker-1"]
    );
    let svc = &worker.member_services[1];
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(
        svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
        "spark-worker-1"
    );
    assert_eq!(svc["spec"]["ports"][0]["name"], "http-ui");
    assert_eq!(svc["metadata"]["labels"][LABEL_ORDINAL], "1");

    let sts = &master.statefulset;
    assert_eq!(sts["metadata"]["name"], "spark-master");
    assert_eq!(sts["spec"]["serviceName"], "spark");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["enableServiceLinks"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "app");
    assert_eq!(c["image"], "localhost/director-boot/spark:4.0.1");
    assert_eq!(
        c["command"],
        serde_json::json!(["/bin/bash", "/etc/director-boot/master.sh"])
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/json/");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8080);
    let env = env_of(sts);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..7],
        [
            "POD_NAME",
            "POD_IP",
            "DB_APP",
            "DB_INSTANCE",
            "DB_ROLE",
            "DB_NAMESPACE",
            "DB_FQDN"
        ]
    );
    assert!(env.contains(&(
        "SPARK_MASTER_URL".into(),
        "spark://spark-master-0.spark.default.svc.cluster.local:7077".into()
    )));

    // The worker script sizes the worker from its limits; the jupyter member gets the token.
    let scripts = &r.shared[2]["data"];
    let worker_sh = scripts["worker.sh"].as_str().unwrap();
    assert!(
        worker_sh.contains("export SPARK_WORKER_CORES=1\n"),
        "{worker_sh}"
    );
    assert!(
        worker_sh.contains("export SPARK_WORKER_MEMORY=1024m\n"),
        "{worker_sh}"
    );
    assert!(worker_sh.contains("\"spark://$master:7077\" --webui-port 8081"));
    assert!(
        scripts["run-pi.sh"]
            .as_str()
            .unwrap()
            .contains("/etc/director-boot/pi.py")
    );
    let jenv = env_of(&r.roles[2].statefulset);
    assert!(jenv.contains(&("JUPYTER_TOKEN".into(), "<from>".into())));

    let membership: Value =
        serde_json::from_str(r.shared[1]["data"]["membership.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        membership["roles"]["worker"]["fqdns"],
        serde_json::json!([
            "spark-worker-0.spark.default.svc.cluster.local",
            "spark-worker-1.spark.default.svc.cluster.local"
        ])
    );
    assert!(master.hooks == Hooks::default());
    assert_eq!(master.endpoints[1].port, 8080);
    assert!(master.endpoints[1].dashboard);
}

#[test]
fn overrides_scale_rename_and_resize() {
    let ov = Overrides {
        sets: vec![
            "worker.members=3".into(),
            "jupyter.members=0".into(),
            "serviceType=ClusterIP".into(),
            "worker.storage.size=5Gi".into(),
            "worker.env.EXTRA={{ roles.worker.members }}".into(),
        ],
        namespace: Some("analytics".into()),
        instance: Some("sp1".into()),
        ..Default::default()
    };
    let r = prepare("spark", &ov).unwrap();
    assert_eq!(
        (r.instance.as_str(), r.namespace.as_str()),
        ("sp1", "analytics")
    );
    assert_eq!(kinds(&r.shared)[0], "Namespace/analytics");
    let worker = &r.roles[1];
    assert_eq!(worker.members, 3);
    assert_eq!(worker.statefulset["spec"]["replicas"], 3);
    assert_eq!(worker.member_services.len(), 3);
    assert_eq!(
        worker.member_services[2]["metadata"]["name"],
        "sp1-worker-2"
    );
    assert_eq!(worker.member_services[2]["spec"]["type"], "ClusterIP");
    assert_eq!(r.roles[2].members, 0);
    assert!(r.roles[2].member_services.is_empty());
    let claims = &worker.statefulset["spec"]["volumeClaimTemplates"];
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert!(env_of(&worker.statefulset).contains(&("EXTRA".into(), "3".into())));
    let membership = shared(&r, "ConfigMap", "sp1-membership")["data"]["membership.env"]
        .as_str()
        .unwrap();
    assert!(
        membership.contains("DB_WORKER_FQDNS=\"sp1-worker-0.sp1.analytics.svc.cluster.local sp1-worker-1.sp1.analytics.svc.cluster.local sp1-worker-2.sp1.analytics.svc.cluster.local\""),
        "{membership}"
    );
}

#[test]
fn the_stored_spec_re_renders_without_secrets() {
    let first = prepare("spark", &sets(&["worker.members=3"])).unwrap();
    assert!(
        !first
            .cluster_spec_yaml
            .contains(first.shared[0]["data"]["token"].as_str().unwrap())
    );
    let again = prepare(
        "spark",
        &Overrides {
            cluster: Some(ClusterInput::Text {
                name: "stored spec".into(),
                text: first.cluster_spec_yaml.clone(),
            }),
            sets: vec!["worker.members=5".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(again.roles[1].members, 5);
    assert_eq!(again.roles[0].members, 1);
    // The generated token is in the cluster already: re-rendering must not replace it.
    assert!(
        kinds(&again.shared)
            .iter()
            .all(|k| !k.starts_with("Secret/"))
    );
    let jenv = env_of(&again.roles[2].statefulset);
    assert!(jenv.contains(&("JUPYTER_TOKEN".into(), "<from>".into())));
}

#[test]
fn generated_secrets_are_fresh_and_masked_for_printing() {
    let a = prepare("jupyter", &Overrides::default()).unwrap();
    let b = prepare("jupyter", &Overrides::default()).unwrap();
    let token = |r: &RenderedApp| r.shared[0]["data"]["token"].as_str().unwrap().to_string();
    assert_ne!(token(&a), token(&b));
    assert_eq!(token(&a).len(), 64); // base64 of 48 hex characters
    assert_eq!(
        a.shared[0]["metadata"]["annotations"][ANNOTATION_SECRET_SOURCE],
        "generated"
    );
    let m = masked(&a);
    assert_eq!(token(&m), "<hidden: 64 characters>");
}

#[test]
fn secret_files_are_read_relative_to_the_file_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ent.dat"), b"ENTITLEMENT").unwrap();
    let spec = tmp.path().join("sym.yaml");
    std::fs::write(
        &spec,
        "acceptLicense: true\nsecrets:\n  entitlement: {file: ent.dat}\n",
    )
    .unwrap();
    let r = prepare(
        "symphony",
        &Overrides {
            cluster: Some(ClusterInput::File(spec)),
            ..Default::default()
        },
    )
    .unwrap();
    let ns = &r.shared[0];
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let secret = shared(&r, "Secret", "symphony-entitlement");
    assert_eq!(secret["metadata"]["name"], "symphony-entitlement");
    assert_eq!(secret["data"]["entitlement.dat"], "RU5USVRMRU1FTlQ=");
    let compute = &r.roles[1];
    assert_eq!(compute.depends_on, ["primary"]);
    assert_eq!(
        compute.hooks.delnodes,
        Some(vec![
            "/bin/bash".to_string(),
            "/etc/director-boot/compute-delnodes.sh".to_string()
        ])
    );
    let scripts = shared(&r, "ConfigMap", "symphony-scripts")["data"]["compute.sh"]
        .as_str()
        .unwrap();
    assert!(scripts.contains("(symphony-primary-0.symphony.symphony.svc.cluster.local)"));
    let caps =
        &r.roles[0].statefulset["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        caps["capabilities"]["add"],
        serde_json::json!(["NET_BIND_SERVICE", "SYS_NICE"])
    );
}

#[test]
fn cassandra_hooks_and_disruption_budgets() {
    let r = prepare("cassandra", &Overrides::default()).unwrap();
    let seed = &r.roles[0];
    assert_eq!(
        seed.statefulset["spec"]["podManagementPolicy"],
        "OrderedReady"
    );
    assert_eq!(kinds(&seed.extra), ["PodDisruptionBudget/cassandra-seed"]);
    assert!(seed.hooks.delnodes.is_some() && seed.hooks.addnodes.is_some());
    let scripts = &shared(&r, "ConfigMap", "cassandra-scripts")["data"];
    assert!(
        scripts["seed-delnodes.sh"]
            .as_str()
            .unwrap()
            .contains("nodetool decommission")
    );
    assert!(
        scripts["worker-addnodes.sh"]
            .as_str()
            .unwrap()
            .contains("nodetool cleanup")
    );
    // Default: a claim per member of the cluster's default StorageClass.
    let claims = &seed.statefulset["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claims["metadata"]["name"], "data");
    assert!(claims["spec"].get("storageClassName").is_none());
}

#[test]
fn persist_dirs_become_claims_of_the_default_class_unless_empty_dir() {
    let volume = |sts: &Value, name: &str| {
        sts["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
    };
    let r = prepare("spark", &Overrides::default()).unwrap();
    let worker = &r.roles[1].statefulset;
    let claims = worker["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["metadata"]["name"], "data");
    assert_eq!(claims[0]["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert!(
        claims[0]["spec"].get("storageClassName").is_none(),
        "{claims:?}"
    );
    assert_eq!(
        claims[0]["metadata"]["labels"]["director-boot.io/role"],
        "worker"
    );
    assert!(volume(worker, "data").is_none(), "the claim is the volume");
    let mounts = &worker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "data"
                && m["mountPath"] == "/var/lib/spark/work"
                && m["subPath"] == "var-lib-spark-work"),
        "{mounts}"
    );
    // The master has no persistDirs: no claim.
    assert!(r.roles[0].statefulset["spec"]["volumeClaimTemplates"].is_null());

    let sized = Overrides {
        sets: vec![
            "worker.storage.size=5Gi".into(),
            "worker.storage.storageClassName=fast".into(),
        ],
        ..Overrides::default()
    };
    let r = prepare("spark", &sized).unwrap();
    let claim = &r.roles[1].statefulset["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(claim["storageClassName"], "fast");

    let ephemeral = Overrides {
        sets: vec!["worker.storage.emptyDir=true".into()],
        ..Overrides::default()
    };
    let r = prepare("spark", &ephemeral).unwrap();
    let worker = &r.roles[1].statefulset;
    assert!(worker["spec"]["volumeClaimTemplates"].is_null());
    assert_eq!(volume(worker, "data").unwrap()["emptyDir"], json!({}));

    let both = Overrides {
        sets: vec![
            "worker.storage.emptyDir=true".into(),
            "worker.storage.size=5Gi".into(),
        ],
        ..Overrides::default()
    };
    let e = prepare("spark", &both).unwrap_err().to_string();
    assert!(
        e.contains("roles.worker.storage.emptyDir: an emptyDir has no size or StorageClass"),
        "{e}"
    );
}

#[test]
fn hadoop_roles_come_in_dependency_order() {
    let r = prepare("hadoop", &Overrides::default()).unwrap();
    let ids: Vec<&str> = r.roles.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(
        ids,
        ["namenode", "datanode", "resourcemanager", "nodemanager"]
    );
}

#[test]
fn a_directory_app_works_like_a_shipped_one() {
    let f = Fixture::demo(APP);
    let r = prepare(&f.path(), &Overrides::default()).unwrap();
    assert_eq!(r.app, "demo");
    assert_eq!(
        shared(&r, "ConfigMap", "demo-scripts")["data"]["worker.sh"],
        "#!/bin/bash\necho demo worker\n"
    );
    assert!(Path::new(&f.path()).join("app.yaml").is_file());
}

#[test]
fn the_readme_documents_every_field() {
    let readme = include_str!("../../catalog/README.md");
    let mut missing = Vec::new();
    for (shape, prefix) in [(&model::APP, ""), (&model::CLUSTER, "")] {
        let mut paths = Vec::new();
        schema::field_paths(shape, prefix, &mut paths);
        for p in paths {
            // Probe fields are documented once for both probes, map keys by what they are.
            let p = p
                .replace("roles[].readiness.", "<probe>.")
                .replace("roles[].liveness.", "<probe>.")
                .replace("roles.<key>", "roles.<role>")
                .replace("secrets.<key>", "secrets.<id>");
            if !readme.contains(&format!("`{p}`")) {
                missing.push(p);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "catalog/README.md does not mention: {missing:#?}"
    );
}

#[test]
fn spark_sets_up_spark_on_kubernetes_and_prints_the_submit_line() {
    let ov = Overrides {
        api: Some(ApiFacts {
            server: "https://10.0.0.1:6443/".into(),
            kubeconfig: "/home/u/admin-java.conf".into(),
        }),
        ..Overrides::default()
    };
    let r = prepare("spark", &ov).unwrap();
    // The ServiceAccount the driver pods and the notebook run as, with a driver's rights.
    let role = shared(&r, "Role", "spark-spark-driver");
    let rules = role["rules"].to_string();
    for want in [
        "pods",
        "services",
        "configmaps",
        "create",
        "delete",
        "watch",
    ] {
        assert!(rules.contains(want), "{rules}");
    }
    let binding = shared(&r, "RoleBinding", "spark-spark-driver");
    assert_eq!(binding["subjects"][0]["name"], "spark-spark");
    let jupyter = r.roles.iter().find(|x| x.id == "jupyter").unwrap();
    assert_eq!(
        jupyter.statefulset["spec"]["template"]["spec"]["serviceAccountName"],
        "spark-spark"
    );
    let worker = r.roles.iter().find(|x| x.id == "worker").unwrap();
    assert!(
        worker.statefulset["spec"]["template"]["spec"]
            .get("serviceAccountName")
            .is_none()
    );
    // One exact line, with the API server and kubeconfig deploy-app used.
    let usage = r.usage.as_deref().unwrap();
    let lines: Vec<&str> = usage
        .lines()
        .filter(|l| l.contains("spark-submit --master k8s://"))
        .collect();
    assert_eq!(lines.len(), 1, "{usage}");
    let line = lines[0];
    assert!(
        line.starts_with(
            "KUBECONFIG=/home/u/admin-java.conf spark-submit --master k8s://https://10.0.0.1:6443 --deploy-mode cluster "
        ),
        "{line}"
    );
    for want in [
        "--conf spark.kubernetes.namespace=default",
        "--conf spark.kubernetes.container.image=localhost/director-boot/spark:4.0.1",
        "--conf spark.kubernetes.authenticate.driver.serviceAccountName=spark-spark",
        "--driver-memory 512m",
        "local:///opt/venv/lib/python3.11/site-packages/pyspark/examples/src/main/python/pi.py",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    assert!(
        usage.contains(
            "kubectl -n default exec spark-jupyter-0 -- bash /etc/director-boot/run-pi-k8s.sh"
        ),
        "{usage}"
    );
    let scripts = shared(&r, "ConfigMap", "spark-scripts");
    let k8s = scripts["data"]["run-pi-k8s.sh"].as_str().unwrap();
    assert!(
        k8s.contains("--conf spark.kubernetes.namespace=default"),
        "{k8s}"
    );
    // Offline (`--render`) the API server is a placeholder; without jupyter no notebook line.
    let offline = prepare(
        "spark",
        &Overrides {
            sets: vec!["jupyter.members=0".into()],
            ..Overrides::default()
        },
    )
    .unwrap();
    let usage = offline.usage.unwrap();
    assert!(usage.contains("k8s://https://API-SERVER:6443"), "{usage}");
    assert!(!usage.contains("run-pi-k8s.sh"), "{usage}");
}

#[test]
fn symphony_says_how_to_get_its_image_and_bad_service_accounts_are_rejected() {
    let loaded = load("symphony").unwrap();
    assert_eq!(loaded.app.image_help.as_deref(), Some("image-help.txt"));
    let r = prepare(
        "symphony",
        &Overrides {
            sets: vec![
                "acceptLicense=true".into(),
                "secrets.entitlement=lab-entitlement".into(),
            ],
            ..Overrides::default()
        },
    )
    .unwrap();
    let help = r.image_help.unwrap();
    for want in [
        "sym-7.3.2.0_x86_64.bin",
        "https://www.ibm.com/products/spectrum-symphony",
        "scripts/build-app-images.sh symphony --installer",
        "director-boot images load",
    ] {
        assert!(help.contains(want), "{want}: {help}");
    }
    // The script prints the very same file.
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-app-images.sh"),
    )
    .unwrap();
    assert!(script.contains("catalog/symphony/image-help.txt"));
    let f = Fixture::demo(&replace(
        APP,
        "    dependsOn: [master]",
        "    dependsOn: [master]\n    serviceAccount: Not_A_Name",
    ));
    let problems = f.validate();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("roles[1].serviceAccount: `Not_A_Name`")),
        "{problems:?}"
    );
}
