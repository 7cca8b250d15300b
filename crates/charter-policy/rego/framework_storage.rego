# charter framework, part 2: storage enforcement points (layer devices, overlays, scratch, 9p)
# and the group-wide switches.
package framework

# ---------------------------------------------------------------------------------------------
# mount_device {target, deviceHash}: a read-only layer device whose dm-verity root hash is some
# container's layer, mounted at a fresh guest path.

layer_hash_known(hash) if {
	some c in policy_containers
	some layer in c.layers
	layer == hash
}

default mount_device := {"allowed": false}

mount_device := {"allowed": true, "metadata": [{"name": "devices", "action": "add", "key": input.target, "value": input.deviceHash}]} if {
	device_target_ok(input.target)
	not device_mounted(input.target)
	layer_hash_known(input.deviceHash)
}

errors contains "deviceHash not found" if {
	input.rule == "mount_device"
	not layer_hash_known(input.deviceHash)
}

errors contains "device already mounted at path" if {
	input.rule == "mount_device"
	device_mounted(input.target)
}

errors contains "mountpoint invalid" if {
	input.rule == "mount_device"
	not device_target_ok(input.target)
}

# unmount_device {unmountTarget}

default unmount_device := {"allowed": false}

unmount_device := {"allowed": true, "metadata": [{"name": "devices", "action": "remove", "key": input.unmountTarget}]} if {
	device_mounted(input.unmountTarget)
}

errors contains "no device at path to unmount" if {
	input.rule == "unmount_device"
	not device_mounted(input.unmountTarget)
}

# ---------------------------------------------------------------------------------------------
# mount_overlay {containerID, layerPaths (top first), target}: every path must be a mounted
# device; the hashes, base first, must equal some containers' `layers` exactly. Those containers
# become the candidates for the container ID.

overlay_hashes := [hash |
	n := count(input.layerPaths)
	some i, _ in input.layerPaths
	hash := data.metadata.devices[input.layerPaths[(n - 1) - i]]
]

overlay_layers_mounted if count(overlay_hashes) == count(input.layerPaths)

overlay_candidates := [i |
	overlay_layers_mounted
	count(input.layerPaths) > 0
	some i, c in policy_containers
	c.layers == overlay_hashes
]

default mount_overlay := {"allowed": false}

mount_overlay := {"allowed": true, "metadata": [
	{"name": "matches", "action": "add", "key": input.containerID, "value": overlay_candidates},
	{"name": "overlayTargets", "action": "add", "key": input.target, "value": true},
]} if {
	container_id_ok(input.containerID)
	input.target != ""
	not overlay_mounted(input.target)
	not container_matched(input.containerID)
	not container_started(input.containerID)
	count(overlay_candidates) > 0
}

errors contains "invalid containerID" if {
	input.rule == "mount_overlay"
	not container_id_ok(input.containerID)
}

errors contains "overlay target already mounted" if {
	input.rule == "mount_overlay"
	overlay_mounted(input.target)
}

errors contains "container already has an overlay" if {
	input.rule == "mount_overlay"
	container_matched(input.containerID)
}

errors contains "container already started" if {
	input.rule == "mount_overlay"
	container_started(input.containerID)
}

errors contains "overlay layer is not a mounted device" if {
	input.rule == "mount_overlay"
	not overlay_layers_mounted
}

errors contains "no matching containers for overlay" if {
	input.rule == "mount_overlay"
	count(overlay_candidates) == 0
}

# unmount_overlay {unmountTarget}

default unmount_overlay := {"allowed": false}

unmount_overlay := {"allowed": true, "metadata": [{"name": "overlayTargets", "action": "remove", "key": input.unmountTarget}]} if {
	overlay_mounted(input.unmountTarget)
}

errors contains "no overlay at path to unmount" if {
	input.rule == "unmount_overlay"
	not overlay_mounted(input.unmountTarget)
}

# ---------------------------------------------------------------------------------------------
# scratch_mount {target, encrypted} / scratch_unmount {unmountTarget}

scratch_mounted(target) if data.metadata.scratch_mounts[target]

scratch_encryption_ok if input.encrypted == true

scratch_encryption_ok if allow_unencrypted_scratch

default scratch_mount := {"allowed": false}

scratch_mount := {"allowed": true, "metadata": [{"name": "scratch_mounts", "action": "add", "key": input.target, "value": {"encrypted": input.encrypted == true}}]} if {
	input.target != ""
	not scratch_mounted(input.target)
	scratch_encryption_ok
}

errors contains "unencrypted scratch not allowed" if {
	input.rule == "scratch_mount"
	not scratch_encryption_ok
}

errors contains "scratch already mounted at path" if {
	input.rule == "scratch_mount"
	scratch_mounted(input.target)
}

default scratch_unmount := {"allowed": false}

scratch_unmount := {"allowed": true, "metadata": [{"name": "scratch_mounts", "action": "remove", "key": input.unmountTarget}]} if {
	scratch_mounted(input.unmountTarget)
}

errors contains "no scratch at path to unmount" if {
	input.rule == "scratch_unmount"
	not scratch_mounted(input.unmountTarget)
}

# ---------------------------------------------------------------------------------------------
# mount_sealed {name, target} (charter's extension): a sealed volume the policy lists, decrypted
# by the agent into the group's `sandbox:///tmp/atlas/sealed/<name>` directory with the key the
# policy's broker releases for the listed resource. Containers reach it only through a mount
# rule whose source names that directory.

default policy_sealed_volumes := []

policy_sealed_volumes := data.policy.sealed_volumes

sealed_volume(name) := v if {
	some v in policy_sealed_volumes
	v.name == name
}

sealed_mounted(name) if data.metadata.sealed_mounts[name]

sealed_target_ok if endswith(input.target, concat("", ["/tmp/atlas/sealed/", input.name]))

default mount_sealed := {"allowed": false}

mount_sealed := {"allowed": true, "metadata": [{"name": "sealed_mounts", "action": "add", "key": input.name, "value": sealed_volume(input.name).resource}]} if {
	sealed_volume(input.name)
	sealed_target_ok
	not sealed_mounted(input.name)
}

errors contains "sealed volume not in policy" if {
	input.rule == "mount_sealed"
	not sealed_volume(input.name)
}

errors contains "sealed volume target is not its sandbox directory" if {
	input.rule == "mount_sealed"
	not sealed_target_ok
}

errors contains "sealed volume already mounted" if {
	input.rule == "mount_sealed"
	sealed_mounted(input.name)
}

# ---------------------------------------------------------------------------------------------
# plan9_mount {target, rootPrefix, mountPathPrefix}: target = <rootPrefix>/<containerID>/mounts/m<N>
# for a container that has candidates. The prefixes are fixed here; the input must agree.

plan9_root_prefix := "/run/gcs/c"

plan9_mount_path_prefix := "/mounts/m[0-9]+"

p9mounted(target) if data.metadata.p9mounts[target]

plan9_owner := id if {
	object.get(input, "rootPrefix", plan9_root_prefix) == plan9_root_prefix
	object.get(input, "mountPathPrefix", plan9_mount_path_prefix) == plan9_mount_path_prefix
	some id, _ in data.metadata.matches
	prefix := concat("", [plan9_root_prefix, "/", id])
	startswith(input.target, prefix)
	regex.match(anchored(plan9_mount_path_prefix), substring(input.target, count(prefix), -1))
}

default plan9_mount := {"allowed": false}

plan9_mount := {"allowed": true, "metadata": [{"name": "p9mounts", "action": "add", "key": input.target, "value": plan9_owner}]} if {
	not p9mounted(input.target)
}

errors contains "plan9 target already mounted" if {
	input.rule == "plan9_mount"
	p9mounted(input.target)
}

errors contains "invalid plan9 mount target" if {
	input.rule == "plan9_mount"
	not plan9_owner
}

default plan9_unmount := {"allowed": false}

plan9_unmount := {"allowed": true, "metadata": [{"name": "p9mounts", "action": "remove", "key": input.unmountTarget}]} if {
	p9mounted(input.unmountTarget)
}

errors contains "no plan9 mount at path to unmount" if {
	input.rule == "plan9_unmount"
	not p9mounted(input.unmountTarget)
}

# ---------------------------------------------------------------------------------------------
# Group-wide switches.

default get_properties := {"allowed": false}

get_properties := {"allowed": true} if allow_properties_access

errors contains "properties access not allowed" if {
	input.rule == "get_properties"
	not allow_properties_access
}

default dump_stacks := {"allowed": false}

dump_stacks := {"allowed": true} if allow_dump_stacks

errors contains "dump stacks not allowed" if {
	input.rule == "dump_stacks"
	not allow_dump_stacks
}

default runtime_logging := {"allowed": false}

runtime_logging := {"allowed": true} if allow_runtime_logging

errors contains "runtime logging not allowed" if {
	input.rule == "runtime_logging"
	not allow_runtime_logging
}

# load_fragment: charter does not load fragments yet, so every fragment is refused.

default load_fragment := {"allowed": false}

errors contains "fragments are not supported" if input.rule == "load_fragment"
