//! A small declarative schema for the catalog's YAML files, checked in full: every unknown,
//! missing, repeated or ill-typed field is reported (serde would stop at the first), and the
//! well-typed rest comes out as JSON for serde, with every field's position in an `Index`.

use serde_json::Value;

use super::names::suggest;
use super::problems::{Index, Problems, join};
use super::yaml::{YKind, YNode};

/// What a field holds.
#[derive(Debug)]
pub enum Shape {
    /// Any scalar, as text (`8080` and `"8080"` alike).
    Str,
    Bool,
    /// An integer in `min..=max`; `what` names it in messages ("a port number in 1..=65535").
    Int {
        min: i64,
        max: i64,
        what: &'static str,
    },
    /// One of these words.
    OneOf(&'static [&'static str]),
    List(&'static Shape),
    /// A mapping with these fields.
    Object(&'static [Field]),
    /// A mapping with free keys, every value of one shape.
    Dict(&'static Shape),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub shape: &'static Shape,
    pub required: bool,
}

/// A field that may be left out.
pub const fn opt(name: &'static str, shape: &'static Shape) -> Field {
    Field {
        name,
        shape,
        required: false,
    }
}

/// A field that must be given.
pub const fn req(name: &'static str, shape: &'static Shape) -> Field {
    Field {
        name,
        shape,
        required: true,
    }
}

/// Check `node` against `shape`; `None` (already reported) when it is null or ill-typed.
pub fn check(
    node: &YNode,
    shape: &Shape,
    path: &str,
    ix: &mut Index,
    p: &mut Problems,
) -> Option<Value> {
    ix.record(path, &node.at);
    if node.is_null() {
        return None;
    }
    let field = if path.is_empty() { "(document)" } else { path };
    let expected = |what: String, p: &mut Problems| {
        p.add(
            node.at.clone(),
            field,
            format!("expected {what}, found {}", node.describe()),
        );
        None
    };
    match shape {
        Shape::Str => match &node.kind {
            YKind::Scalar { text, .. } => Some(Value::String(text.clone())),
            _ => expected("a string".into(), p),
        },
        Shape::Bool => match &node.kind {
            YKind::Scalar { text, .. } if text == "true" => Some(Value::Bool(true)),
            YKind::Scalar { text, .. } if text == "false" => Some(Value::Bool(false)),
            _ => expected("`true` or `false`".into(), p),
        },
        Shape::Int { min, max, what } => match &node.kind {
            YKind::Scalar { text, .. } => match text.parse::<i64>() {
                Ok(v) if (*min..=*max).contains(&v) => Some(Value::from(v)),
                _ => expected((*what).into(), p),
            },
            _ => expected((*what).into(), p),
        },
        Shape::OneOf(words) => match &node.kind {
            YKind::Scalar { text, .. } if words.contains(&text.as_str()) => {
                Some(Value::String(text.clone()))
            }
            YKind::Scalar { text, .. } => {
                let hint = suggest(text, words.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                p.add(
                    node.at.clone(),
                    field,
                    format!("expected one of {}, found `{text}`{hint}", words.join(", ")),
                );
                None
            }
            _ => expected(format!("one of {}", words.join(", ")), p),
        },
        Shape::List(item) => match &node.kind {
            YKind::Seq(items) => Some(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| check(n, item, &format!("{path}[{i}]"), ix, p))
                    .collect(),
            )),
            _ => expected("a list".into(), p),
        },
        Shape::Object(fields) => object(node, fields, path, ix, p),
        Shape::Dict(value) => match &node.kind {
            YKind::Map(entries) => {
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    let YKind::Scalar { text: key, .. } = &k.kind else {
                        p.add(
                            k.at.clone(),
                            field,
                            format!("a key must be a plain word, found {}", k.describe()),
                        );
                        continue;
                    };
                    let child = join(path, key);
                    if out.contains_key(key) {
                        p.add(k.at.clone(), &child, "given twice: keep one");
                        continue;
                    }
                    ix.record_key(&child, &k.at);
                    if let Some(v) = check(v, value, &child, ix, p) {
                        out.insert(key.clone(), v);
                    } else if v.is_null() {
                        out.insert(key.clone(), Value::Null);
                    }
                }
                Some(Value::Object(out))
            }
            _ => expected("a mapping".into(), p),
        },
    }
}

fn object(
    node: &YNode,
    fields: &[Field],
    path: &str,
    ix: &mut Index,
    p: &mut Problems,
) -> Option<Value> {
    let names = || fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
    let field = if path.is_empty() { "(document)" } else { path };
    let YKind::Map(entries) = &node.kind else {
        p.add(
            node.at.clone(),
            field,
            format!(
                "expected a mapping with fields {}, found {}",
                names(),
                node.describe()
            ),
        );
        return None;
    };
    let mut out = serde_json::Map::new();
    let mut seen: Vec<(&str, &YNode)> = Vec::new();
    for (k, v) in entries {
        let YKind::Scalar { text: key, .. } = &k.kind else {
            p.add(
                k.at.clone(),
                field,
                format!(
                    "a field name must be a plain word, found {}; valid fields here: {}",
                    k.describe(),
                    names()
                ),
            );
            continue;
        };
        let child = join(path, key);
        let Some(spec) = fields.iter().find(|f| f.name == key) else {
            let hint = suggest(key, fields.iter().map(|f| f.name))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            p.add(
                k.at.clone(),
                child,
                format!("unknown field{hint}; valid fields here: {}", names()),
            );
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| n == key) {
            let line = first
                .at
                .mark
                .map(|m| format!(" (first at line {})", m.line))
                .unwrap_or_default();
            p.add(k.at.clone(), child, format!("given twice{line}: keep one"));
            continue;
        }
        seen.push((key, k));
        ix.record_key(&child, &k.at);
        if let Some(value) = check(v, spec.shape, &child, ix, p) {
            out.insert(key.clone(), value);
        }
    }
    for f in fields.iter().filter(|f| f.required) {
        let given = entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, YKind::Scalar { text, .. } if text == f.name));
        match given {
            None => p.add(
                node.at.clone(),
                join(path, f.name),
                "missing: this field is required",
            ),
            Some((k, v)) if v.is_null() => p.add(
                k.at.clone(),
                join(path, f.name),
                "missing: this field is required (it is empty)",
            ),
            Some(_) => {}
        }
    }
    Some(Value::Object(out))
}

/// Every field path a shape allows (`roles[].services[].port`), for docs and their test.
#[cfg(test)]
pub fn field_paths(shape: &Shape, path: &str, out: &mut Vec<String>) {
    match shape {
        Shape::List(item) => field_paths(item, &format!("{path}[]"), out),
        Shape::Dict(value) => field_paths(value, &join(path, "<key>"), out),
        Shape::Object(fields) => {
            for f in *fields {
                let child = join(path, f.name);
                out.push(child.clone());
                field_paths(f.shape, &child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::yaml::{At, Source, parse};

    static PORT: Shape = Shape::Int {
        min: 1,
        max: 65535,
        what: "a port number in 1..=65535",
    };
    static SVC: Shape = Shape::Object(&[req("id", &Shape::Str), req("port", &PORT)]);
    static DOC: Shape = Shape::Object(&[
        req("name", &Shape::Str),
        opt("services", &Shape::List(&SVC)),
        opt("env", &Shape::Dict(&Shape::Str)),
        opt("kind", &Shape::OneOf(&["ClusterIP", "NodePort"])),
    ]);

    fn run(text: &str) -> (Option<Value>, Vec<String>) {
        let node = parse(text, Source::File("t.yaml".into())).unwrap().unwrap();
        let mut ix = Index::new(At::file("t.yaml"));
        let mut p = Problems::default();
        let v = check(&node, &DOC, "", &mut ix, &mut p);
        (v, p.list.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn reports_every_problem_at_once() {
        let (_, problems) = run(
            "nme: x\nservices:\n  - {id: a, port: 70000}\n  - {id: b, prot: 1}\nkind: NodePrt\nenv: {A: 1, A: 2}\n",
        );
        assert_eq!(
            problems,
            vec![
                "t.yaml:1:1: nme: unknown field (did you mean `name`?); valid fields here: name, services, env, kind",
                "t.yaml:3:19: services[0].port: expected a port number in 1..=65535, found `70000`",
                "t.yaml:4:13: services[1].prot: unknown field (did you mean `port`?); valid fields here: id, port",
                "t.yaml:4:6: services[1].port: missing: this field is required",
                "t.yaml:5:7: kind: expected one of ClusterIP, NodePort, found `NodePrt` (did you mean `NodePort`?)",
                "t.yaml:6:13: env.A: given twice: keep one",
                "t.yaml:1:1: name: missing: this field is required",
            ]
        );
    }

    #[test]
    fn well_typed_documents_become_json() {
        let (v, problems) = run("name: x\nservices: [{id: a, port: '80'}]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            v.unwrap(),
            serde_json::json!({"name": "x", "services": [{"id": "a", "port": 80}]})
        );
    }
}
