//! Policy outputs: digest, atomic file writes, and the policy as a pod annotation.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use yaml_serde::{Mapping, Value};

use crate::{Error, PodTemplate};

/// The annotation carrying the base64 policy: Kata's agent-policy annotation, which the
/// Kubernetes runtime path passes to the sandbox. (charter writes the plain base64 of the
/// policy bytes, not genpolicy's gzip'd initdata.)
pub const POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";

/// SHA-256 of `bytes`, lowercase hex (for a policy: its HOST_DATA).
#[must_use]
pub fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename: the
/// file is either absent/unchanged or complete, never partial.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_all_atomically(&[(path, bytes)])
}

/// Writes several files so that none is written unless all could be: every file goes to a
/// temporary file beside it first (written and synced), and only then are they renamed into
/// place. Should a rename fail, the files already renamed by this call are removed again, so
/// no output of a failed call is left behind.
pub fn write_all_atomically(files: &[(&Path, &[u8])]) -> Result<(), Error> {
    let io = |path: &Path, source| Error::Io {
        path: path.to_owned(),
        source,
    };
    for (i, (path, _)) in files.iter().enumerate() {
        if files
            .iter()
            .skip(i.saturating_add(1))
            .any(|(p, _)| p == path)
        {
            return Err(io(
                path,
                std::io::Error::other("the same file is given for two outputs"),
            ));
        }
    }
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(path, e))?;
        tmp.write_all(bytes).map_err(|e| io(path, e))?;
        tmp.as_file().sync_all().map_err(|e| io(path, e))?;
        staged.push((*path, tmp));
    }
    let mut done: Vec<&Path> = Vec::with_capacity(staged.len());
    for (path, tmp) in staged {
        if let Err(e) = tmp.persist(path) {
            for p in done {
                let _ = std::fs::remove_file(p);
            }
            return Err(io(path, e.error));
        }
        done.push(path);
    }
    Ok(())
}

/// Returns `yaml` with the policy set as [`POLICY_ANNOTATION`] on `template`'s pod metadata
/// (the pod's own, or the template's for controllers). Other documents are kept; comments and
/// formatting are not preserved.
pub fn annotate(yaml: &str, template: &PodTemplate, rego: &str) -> Result<String, Error> {
    let mut docs = crate::k8s::documents(yaml)?;
    let bad = |message: String| Error::Yaml {
        document: template.document,
        message,
    };
    let doc = docs
        .get_mut(template.document)
        .ok_or_else(|| bad("document not found".into()))?;
    let mut parts: Vec<&str> = template.spec_path.split('.').collect();
    if let Some(last) = parts.last_mut() {
        *last = "metadata";
    }
    let mut node = doc;
    for part in parts {
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| bad(format!("{} is not a mapping", template.spec_path)))?;
        node = map
            .entry(Value::String(part.to_owned()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    let meta = node
        .as_mapping_mut()
        .ok_or_else(|| bad("metadata is not a mapping".into()))?;
    let annotations = meta
        .entry(Value::String("annotations".into()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if annotations.is_null() {
        *annotations = Value::Mapping(Mapping::new());
    }
    let annotations = annotations
        .as_mapping_mut()
        .ok_or_else(|| bad("metadata.annotations is not a mapping".into()))?;
    annotations.insert(
        Value::String(POLICY_ANNOTATION.into()),
        Value::String(base64::engine::general_purpose::STANDARD.encode(rego)),
    );
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = yaml_serde::to_string(doc).map_err(|e| Error::Yaml {
            document: i,
            message: e.to_string(),
        })?;
        out.push_str(&text);
    }
    Ok(out)
}
