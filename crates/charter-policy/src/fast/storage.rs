//! `mount_device`, `mount_overlay` and `scratch_mount`, as `rego/framework_storage.rego` decides and explains
//! them. Neither sets `error_objects`, so a denial carries the framework's default (`[]`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{truthy, FastAllow, FastPolicy, Outcome};
use crate::deny::Reason;
use crate::metadata::Metadata;
use crate::request::{MountDevice, MountOverlay, ScratchMount};

/// The framework's `reason` for a denial without error objects: `errors` is a Rego set, which
/// regorus returns sorted (byte order).
fn deny(errors: BTreeSet<&str>) -> Outcome {
    Outcome::Deny(Reason {
        errors: errors.into_iter().map(str::to_owned).collect(),
        error_objects: Vec::new(),
    })
}

fn allow(ops: Value) -> Outcome {
    Outcome::Allow(FastAllow {
        ops,
        env_list: None,
        caps_list: None,
        allow_stdio_access: false,
    })
}

impl FastPolicy {
    pub(crate) fn mount_device(&self, r: &MountDevice, md: &Metadata) -> Outcome {
        let target_ok = self.device_target.is_match(&r.target);
        let Some(mounted) = truthy(md, "devices", &r.target) else {
            return Outcome::Unknown;
        };
        let known = self.layer_hashes.contains(&r.device_hash);
        if target_ok && !mounted && known {
            return allow(
                json!([{"name": "devices", "action": "add", "key": r.target, "value": r.device_hash}]),
            );
        }
        let mut errors = BTreeSet::new();
        if !known {
            errors.insert("deviceHash not found");
        }
        if mounted {
            errors.insert("device already mounted at path");
        }
        if !target_ok {
            errors.insert("mountpoint invalid");
        }
        deny(errors)
    }

    pub(crate) fn mount_overlay(&self, r: &MountOverlay, md: &Metadata) -> Outcome {
        let id_ok = self.container_id.is_match(&r.container_id);
        let (Some(target_mounted), Some(matched), Some(started)) = (
            truthy(md, "overlayTargets", &r.target),
            truthy(md, "matches", &r.container_id),
            truthy(md, "started", &r.container_id),
        ) else {
            return Outcome::Unknown;
        };
        // overlay_hashes: the device hash of every mounted path, base first; unmounted paths
        // are skipped (and then the counts differ).
        let devices = match md.get("devices") {
            None => None,
            Some(Value::Object(d)) => Some(d),
            Some(_) => return Outcome::Unknown,
        };
        let mut hashes: Vec<&str> = Vec::with_capacity(r.layer_paths.len());
        for p in r.layer_paths.iter().rev() {
            match devices.and_then(|d| d.get(p)) {
                None => {}
                Some(Value::String(h)) => hashes.push(h),
                Some(_) => return Outcome::Unknown,
            }
        }
        let all_mounted = hashes.len() == r.layer_paths.len();
        let candidates: Vec<usize> = if all_mounted && !r.layer_paths.is_empty() {
            self.containers
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.c.layers
                        .iter()
                        .map(String::as_str)
                        .eq(hashes.iter().copied())
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        if id_ok
            && !r.target.is_empty()
            && !target_mounted
            && !matched
            && !started
            && !candidates.is_empty()
        {
            return allow(json!([
                {"name": "matches", "action": "add", "key": r.container_id, "value": candidates},
                {"name": "overlayTargets", "action": "add", "key": r.target, "value": true},
            ]));
        }
        let mut errors = BTreeSet::new();
        if !id_ok {
            errors.insert("invalid containerID");
        }
        if target_mounted {
            errors.insert("overlay target already mounted");
        }
        if matched {
            errors.insert("container already has an overlay");
        }
        if started {
            errors.insert("container already started");
        }
        if !all_mounted {
            errors.insert("overlay layer is not a mounted device");
        }
        if candidates.is_empty() {
            errors.insert("no matching containers for overlay");
        }
        deny(errors)
    }

    pub(crate) fn scratch_mount(&self, r: &ScratchMount, md: &Metadata) -> Outcome {
        let Some(mounted) = truthy(md, "scratch_mounts", &r.target) else {
            return Outcome::Unknown;
        };
        let encryption_ok = r.encrypted || self.unencrypted_scratch;
        if !r.target.is_empty() && !mounted && encryption_ok {
            return allow(json!([{
                "name": "scratch_mounts", "action": "add", "key": r.target,
                "value": {"encrypted": r.encrypted},
            }]));
        }
        let mut errors = BTreeSet::new();
        if !encryption_ok {
            errors.insert("unencrypted scratch not allowed");
        }
        if mounted {
            errors.insert("scratch already mounted at path");
        }
        deny(errors)
    }
}
