//! Every object every catalog entry renders, at its default size and scaled, is valid against
//! the Kubernetes v1.36.3 OpenAPI schema (offline; tests/openapi/ holds the trimmed schema,
//! made by scripts/trim-openapi.py with `additionalProperties: false` on every object, so a
//! misspelt field fails here instead of being pruned silently by the API server).

use std::collections::HashMap;

use director_boot::catalog::{self, Overrides, RenderedApp};
use serde_json::{Value, json};

const SUBSET: &str = include_str!("openapi/k8s-v1.36.3-subset.json");

struct Schemas {
    by_kind: HashMap<(String, String), jsonschema::Validator>,
}

impl Schemas {
    fn load() -> Schemas {
        let doc: Value = serde_json::from_str(SUBSET).expect("the subset is JSON");
        let defs = &doc["definitions"];
        let mut by_kind = HashMap::new();
        for name in doc["x-kinds"].as_array().expect("x-kinds") {
            let name = name.as_str().expect("a definition name");
            let def = &defs[name];
            let api = def["properties"]["apiVersion"]["enum"][0]
                .as_str()
                .expect("pinned apiVersion")
                .to_string();
            let kind = def["properties"]["kind"]["enum"][0]
                .as_str()
                .expect("pinned kind")
                .to_string();
            // A top-level object names its kind and itself (embedded ones need not).
            let root = json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "definitions": defs,
                "allOf": [{"$ref": format!("#/definitions/{name}")}],
                "required": ["apiVersion", "kind", "metadata"],
            });
            let validator = jsonschema::draft7::new(&root).expect("the subset is a valid schema");
            by_kind.insert((api, kind), validator);
        }
        Schemas { by_kind }
    }

    /// Every schema violation of one object, as `Kind/name: /path: message`.
    fn check(&self, obj: &Value) -> Vec<String> {
        let api = obj["apiVersion"].as_str().unwrap_or("?").to_string();
        let kind = obj["kind"].as_str().unwrap_or("?").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("?");
        let Some(v) = self.by_kind.get(&(api.clone(), kind.clone())) else {
            return vec![format!(
                "{api} {kind}/{name}: no schema for this kind in the subset"
            )];
        };
        v.iter_errors(obj)
            .map(|e| format!("{kind}/{name}: {}: {e}", e.instance_path()))
            .collect()
    }

    fn check_app(&self, r: &RenderedApp) -> Vec<String> {
        catalog::objects(r)
            .into_iter()
            .flat_map(|o| self.check(o))
            .collect()
    }
}

/// What only the deploying user gives, so every entry can be rendered for real.
fn user_sets(app: &str) -> Vec<String> {
    match app {
        "symphony" => vec![
            "secrets.entitlement=test-entitlement".into(),
            "acceptLicense=true".into(),
        ],
        _ => Vec::new(),
    }
}

#[test]
fn every_entry_renders_schema_valid_objects_by_default_and_scaled() {
    let schemas = Schemas::load();
    let apps = catalog::embedded_apps();
    assert!(apps.len() >= 5, "{apps:?}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for app in &apps {
        let default = Overrides {
            sets: user_sets(app),
            ..Default::default()
        };
        let r = catalog::prepare(app, &default).unwrap_or_else(|e| panic!("{app}: {e}"));
        checked += catalog::objects(&r).len();
        problems.extend(
            schemas
                .check_app(&r)
                .into_iter()
                .map(|p| format!("{app}: {p}")),
        );

        // Scaled: every role at its maximum (or 3 more), storage everywhere, NodePorts
        // pinned, in a namespace of its own (so a Namespace object is rendered too).
        let loaded = catalog::load(app).unwrap_or_else(|e| panic!("{app}: {e}"));
        let mut sets = user_sets(app);
        let mut port = 30000;
        for role in &loaded.app.roles {
            let n = role.members.max.unwrap_or(role.members.min + 3);
            sets.push(format!("{}.members={n}", role.id));
            sets.push(format!("{}.storage.size=3Gi", role.id));
            sets.push(format!("{}.storage.storageClassName=local-path", role.id));
            sets.push(format!("{}.resources.limits.memory=2Gi", role.id));
            if let Some(svc) = role.services.first() {
                sets.push(format!("{}.nodePorts.{}={port}", role.id, svc.id));
                port += 100;
            }
        }
        let scaled = Overrides {
            sets,
            namespace: Some("scaled-ns".into()),
            instance: Some(format!("{app}-big")),
            ..Default::default()
        };
        let r = catalog::prepare(app, &scaled).unwrap_or_else(|e| panic!("{app} scaled: {e}"));
        assert_eq!(r.shared[0]["kind"], "Namespace", "{app}");
        checked += catalog::objects(&r).len();
        problems.extend(
            schemas
                .check_app(&r)
                .into_iter()
                .map(|p| format!("{app} scaled: {p}")),
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{checked} objects checked against the schema");
    assert!(checked > 300, "only {checked} objects checked");
}

#[test]
fn the_schema_catches_misspelt_and_ill_typed_fields() {
    let schemas = Schemas::load();
    let r = catalog::prepare("spark", &Overrides::default()).expect("spark renders");
    let mut sts = r.roles[0].statefulset.clone();
    assert!(schemas.check(&sts).is_empty());
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    sts["spec"]["replicas"] = json!("two");
    let problems = schemas.check(&sts);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.contains("/spec/template/spec/containers/0")
            && p.contains("imagePullPolcy")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("/spec/replicas")),
        "{problems:#?}"
    );

    let mut svc = r.roles[0].member_services[0].clone();
    svc["spec"]["ports"][0]["targetPort"] = json!("http-ui");
    assert!(schemas.check(&svc).is_empty(), "int-or-string takes a name");
    svc["spec"]["ports"][0]["port"] = json!("7077");
    assert_eq!(schemas.check(&svc).len(), 1);

    let mut cm = r.shared[1].clone();
    cm["apiVersion"] = json!("apps/v1");
    assert_eq!(schemas.check(&cm).len(), 1, "no ConfigMap in apps/v1");
}
