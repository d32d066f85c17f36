//! `catalog validate|list|show` and `deploy-app --render`.

use std::process::ExitCode;

use crate::catalog::{self, CatalogError, ClusterInput, Overrides, RenderedApp};
use crate::cli::{AppSpecArgs, CatalogCommand};
use crate::output;

pub fn run(command: CatalogCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        CatalogCommand::Validate { apps } => validate(&apps, json),
        CatalogCommand::List => list(json),
        CatalogCommand::Show { app } => show(&app, json),
    }
}

pub fn overrides(spec: &AppSpecArgs) -> Overrides {
    Overrides {
        cluster: spec.cluster.clone().map(ClusterInput::File),
        sets: spec.set.clone(),
        namespace: spec.namespace.clone(),
        instance: spec.instance.clone(),
        api: None,
    }
}

fn problems_json(e: &CatalogError) -> serde_json::Value {
    let problems: Vec<_> = e
        .problems()
        .iter()
        .map(|p| {
            let (file, arg) = match &*p.at.source {
                catalog::Source::File(f) => (Some(f.as_str()), None),
                catalog::Source::Arg(a) => (None, Some(a.as_str())),
            };
            serde_json::json!({
                "file": file, "argument": arg,
                "line": p.at.mark.map(|m| m.line), "column": p.at.mark.map(|m| m.column),
                "field": p.field, "message": p.message,
            })
        })
        .collect();
    serde_json::json!({ "error": e.to_string(), "problems": problems })
}

fn validate(apps: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let targets: Vec<String> = if apps.is_empty() {
        catalog::embedded_apps()
    } else {
        apps.to_vec()
    };
    let mut failed = 0;
    let mut report = Vec::new();
    for target in &targets {
        match catalog::validate(target) {
            Ok(v) => {
                let renders: Vec<String> = v
                    .renders
                    .iter()
                    .map(|counts| {
                        counts
                            .iter()
                            .map(|(r, n)| format!("{r}={n}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                if json {
                    report.push(serde_json::json!({
                        "app": target, "valid": true, "dir": v.dir, "objects": v.objects,
                        "rendered_with": renders,
                    }));
                } else {
                    println!(
                        "{}: valid ({} objects by default; rendered with {})",
                        v.dir,
                        v.objects,
                        renders.join(" | ")
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    let mut j = problems_json(&e);
                    j["app"] = target.clone().into();
                    j["valid"] = false.into();
                    report.push(j);
                } else {
                    eprint!("{target}: {e}");
                    if !e.to_string().ends_with('\n') {
                        eprintln!();
                    }
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(report));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let mut failed = false;
    for name in catalog::embedded_apps() {
        match catalog::load(&name) {
            Ok(l) => {
                let roles: Vec<String> = l.app.roles.iter().map(|r| r.id.clone()).collect();
                if json {
                    out.push(serde_json::json!({
                        "name": l.app.name, "version": l.app.version,
                        "label": l.app.label, "roles": roles,
                    }));
                }
                rows.push(vec![
                    l.app.name.clone(),
                    l.app.version.clone(),
                    roles.join(","),
                    l.app.label.clone(),
                ]);
            }
            Err(e) => {
                failed = true;
                eprint!("{name}: {e}");
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(out));
    } else {
        print!(
            "{}",
            output::table(&["NAME", "VERSION", "ROLES", "DESCRIPTION"], &rows)
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show(name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match catalog::load(name) {
        Ok(l) => l,
        Err(e) => return fail(&e, json),
    };
    let app = &loaded.app;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dir": loaded.dir, "app": app, "default_cluster_spec": loaded.default_spec(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} {} ({})", app.name, app.version, loaded.dir);
    if !app.label.is_empty() {
        println!("{}", app.label);
    }
    if !app.description.is_empty() {
        println!("{}", app.description.trim_end());
    }
    println!();
    let rows: Vec<Vec<String>> = app
        .roles
        .iter()
        .map(|r| {
            let max = r
                .members
                .max
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into());
            let services: Vec<String> = r
                .services
                .iter()
                .map(|s| format!("{}:{}{}", s.id, s.port, if s.dashboard { "*" } else { "" }))
                .collect();
            let hooks: Vec<&str> = r.hooks.each().into_iter().map(|(e, _)| e).collect();
            vec![
                r.id.clone(),
                format!("{}..{max}", r.members.min),
                r.depends_on.join(","),
                services.join(" "),
                hooks.join(","),
                r.image
                    .clone()
                    .or_else(|| app.image.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "ROLE",
                "MEMBERS",
                "DEPENDS ON",
                "SERVICES (* dashboard)",
                "HOOKS",
                "IMAGE"
            ],
            &rows
        )
    );
    if !app.secrets.is_empty() {
        println!();
        for s in &app.secrets {
            let how = if s.generate {
                "generated"
            } else if s.required {
                "required"
            } else {
                "optional"
            };
            println!("secret {} ({how}): {}", s.id, s.description);
        }
    }
    if let Some(l) = &app.license {
        println!();
        println!(
            "license: {}{}{}",
            l.name,
            l.url
                .as_deref()
                .map(|u| format!(" <{u}>"))
                .unwrap_or_default(),
            if l.must_accept {
                " (deploy with --set acceptLicense=true)"
            } else {
                ""
            }
        );
    }
    if let Some(spec) = loaded.default_spec() {
        println!("\ndefault cluster spec ({}/cluster.yaml):", loaded.dir);
        print!("{spec}");
    }
    Ok(ExitCode::SUCCESS)
}

fn fail(e: &CatalogError, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", problems_json(e));
    } else {
        eprint!("error: {e}");
        if !e.to_string().ends_with('\n') {
            eprintln!();
        }
    }
    Ok(ExitCode::FAILURE)
}

/// `deploy-app NAME --render`: the objects in apply order, as YAML documents, secrets masked.
pub fn render(app: &str, spec: &AppSpecArgs, json: bool) -> anyhow::Result<ExitCode> {
    let rendered = match catalog::prepare(app, &overrides(spec)) {
        Ok(r) => catalog::masked(&r),
        Err(e) => return fail(&e, json),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rendered)?);
    } else {
        print!("{}", manifests(&rendered)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Multi-document YAML in apply order.
pub fn manifests(r: &RenderedApp) -> anyhow::Result<String> {
    let mut out = format!(
        "# {} instance {} in namespace {} (rendered by director-boot; secret values hidden)\n",
        r.app, r.instance, r.namespace
    );
    for obj in catalog::objects(r) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(obj)?);
    }
    Ok(out)
}
