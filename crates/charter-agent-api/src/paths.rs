//! The guest's canonical paths. The agent refuses any request naming other paths, so the host
//! cannot point mounts, bundles or scratch anywhere else (ACI's guest makes the same checks
//! outside the policy: bundle `/run/gcs/c/<id>`, rootfs `<bundle>/rootfs`).

/// Layer mount targets: `/run/layers/<name>` (the framework's `mount_device` target pattern).
pub const LAYERS: &str = "/run/layers";
/// Scratch targets: `/run/scratch/<container id>`.
pub const SCRATCH: &str = "/run/scratch";
/// Container bundles: `/run/charter/c/<container id>`; the root filesystem is `<bundle>/rootfs`.
pub const CONTAINERS: &str = "/run/charter/c";
/// The group's sandbox directory (`sandboxDir`): `hosts`, `hostname`, `resolv.conf` and volume
/// directories (`tmp/atlas/<kind>/<name>`) for `sandbox://` mount sources.
pub const SANDBOX_DIR: &str = "/run/charter/sandbox";

/// Sealed volumes are decrypted into `<SANDBOX_DIR>/tmp/atlas/sealed/<name>`.
pub const SEALED_SUBDIR: &str = "tmp/atlas/sealed";

/// Where the agent decrypts the sealed volume `name`.
#[must_use]
pub fn sealed(name: &str) -> String {
    format!("{SANDBOX_DIR}/{SEALED_SUBDIR}/{name}")
}

/// The host's byte relay to the policy's key broker, a unix socket in the host directory.
pub const BROKER_RELAY: &str = "broker.sock";

/// Whether `id` is a valid container id (the framework's pattern).
#[must_use]
pub fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `name` is one safe path component (no separators, not `.`/`..`, not hidden).
#[must_use]
pub fn valid_component(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The overlay target (root filesystem) of a container.
#[must_use]
pub fn rootfs(container_id: &str) -> String {
    format!("{CONTAINERS}/{container_id}/rootfs")
}

/// The scratch target of a container.
#[must_use]
pub fn scratch(container_id: &str) -> String {
    format!("{SCRATCH}/{container_id}")
}

/// A layer mount target.
#[must_use]
pub fn layer(name: &str) -> String {
    format!("{LAYERS}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_components() {
        assert!(valid_container_id("web-1.a_b"));
        assert!(!valid_container_id("../x"));
        assert!(!valid_container_id("-x"));
        assert!(!valid_container_id(""));
        assert!(!valid_container_id(&"a".repeat(129)));
        assert!(valid_component("0.img"));
        assert!(!valid_component(".."));
        assert!(!valid_component("a/b"));
        assert!(!valid_component(".hidden"));
    }
}
