//! Loads the case table under `tests/cases/` and expands it into flat request sequences
//! (policy text + ordered steps), shared by the case runner and the OPA differential test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use charter_policy::PolicyDocument;
use serde_json::{Map, Value};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub rule: String,
    pub input: Value,
    pub allowed: bool,
    pub error: Option<String>,
    pub stdio: Option<bool>,
    pub env_list: Option<Vec<String>>,
    pub caps_bounding: Option<Vec<String>>,
    pub prelude: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Case {
    pub file: String,
    pub name: String,
    pub hostile: bool,
    pub policy_name: String,
    pub policy: String,
    pub steps: Vec<Step>,
}

pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// Replaces every string "@name" with the input template `name`.
fn resolve(v: &Value, inputs: &Map<String, Value>) -> Value {
    match v {
        Value::String(s) if s.starts_with('@') => {
            let t = inputs
                .get(&s[1..])
                .unwrap_or_else(|| panic!("unknown template {s}"));
            resolve(t, inputs)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, inputs)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve(x, inputs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn step(raw: &Value, inputs: &Map<String, Value>, prelude: bool) -> Step {
    let mut input = resolve(&raw["input"], inputs);
    if let Some(patch) = raw.get("patch") {
        merge_patch(&mut input, &resolve(patch, inputs));
    }
    let strs = |v: &Value| -> Option<Vec<String>> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
    };
    Step {
        rule: raw["rule"].as_str().unwrap().to_owned(),
        input,
        allowed: if prelude {
            true
        } else {
            raw["allowed"].as_bool().expect("allowed")
        },
        error: raw.get("error").and_then(Value::as_str).map(str::to_owned),
        stdio: raw.get("stdio").and_then(Value::as_bool),
        env_list: raw.get("env_list").and_then(strs),
        caps_bounding: raw.get("caps_bounding").and_then(strs),
        prelude,
    }
}

fn expand_prelude(name: &str, fixtures: &Value, inputs: &Map<String, Value>, out: &mut Vec<Step>) {
    let steps = fixtures["preludes"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no prelude {name}"));
    for s in steps {
        if let Some(nested) = s.as_str() {
            expand_prelude(nested.trim_start_matches('@'), fixtures, inputs, out);
        } else {
            out.push(step(s, inputs, true));
        }
    }
}

pub fn policy_text(name: &str, fixtures: &Value) -> String {
    if let Some(file) = name
        .strip_prefix("file:")
        .or_else(|| name.strip_prefix("rego:"))
    {
        std::fs::read_to_string(cases_dir().join("policies").join(format!("{file}.rego"))).unwrap()
    } else {
        let doc: PolicyDocument =
            serde_json::from_value(fixtures["policies"][name].clone()).expect("policy fixture");
        doc.to_rego()
    }
}

pub fn load_cases() -> Vec<Case> {
    let dir = cases_dir();
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixtures.json")).unwrap()).unwrap();
    let inputs = fixtures["inputs"].as_object().unwrap().clone();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("fixtures.json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let table: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for raw in table["cases"].as_array().unwrap() {
            let policy_name = raw["policy"].as_str().unwrap().to_owned();
            let mut steps = Vec::new();
            for p in raw["prelude"].as_array().unwrap() {
                expand_prelude(p.as_str().unwrap(), &fixtures, &inputs, &mut steps);
            }
            for s in raw["steps"].as_array().unwrap() {
                steps.push(step(s, &inputs, false));
            }
            out.push(Case {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                name: raw["name"].as_str().unwrap().to_owned(),
                hostile: raw["hostile"].as_bool().unwrap_or(false),
                policy: policy_text(&policy_name, &fixtures),
                policy_name,
                steps,
            });
        }
    }
    out
}
