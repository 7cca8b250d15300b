# charter framework, part 1: policy data with defaults, metadata access, matching helpers
# (environment, user, capabilities, mounts) and the deny reason.
#
# Written for charter from the ACI security-policy semantics (see
# ../../../../shared/research/aci-parma.md §1-2); identifiers of the policy surface and of `input`
# follow ACI so that ACI policies read the same way.
package framework

# ---------------------------------------------------------------------------------------------
# Policy data and group flags (absent means the restrictive value).

# `data.charter_static` holds the same values, evaluated once by the enforcer, for policies
# whose data is plain literals (rendered from the typed model): regorus would otherwise rebuild
# a large literal on every query. Without it the policy's own rules are read.

default policy_containers := []

policy_containers := data.charter_static.containers if data.charter_static

else := data.policy.containers

default policy_external_processes := []

policy_external_processes := data.charter_static.external_processes if data.charter_static

else := data.policy.external_processes

default allow_properties_access := false

allow_properties_access if data.policy.allow_properties_access == true

default allow_dump_stacks := false

allow_dump_stacks if data.policy.allow_dump_stacks == true

default allow_runtime_logging := false

allow_runtime_logging if data.policy.allow_runtime_logging == true

default allow_environment_variable_dropping := false

allow_environment_variable_dropping if data.policy.allow_environment_variable_dropping == true

default allow_unencrypted_scratch := false

allow_unencrypted_scratch if data.policy.allow_unencrypted_scratch == true

default allow_capability_dropping := false

allow_capability_dropping if data.policy.allow_capability_dropping == true

# ---------------------------------------------------------------------------------------------
# Metadata (the inductive state, `data.metadata.<name>`), changed only through the ops that an
# allowed decision returns: {"name", "action": "add"|"update"|"remove", "key", "value"}.

device_mounted(target) if data.metadata.devices[target]

overlay_mounted(target) if data.metadata.overlayTargets[target]

container_started(id) if data.metadata.started[id]

container_matched(id) if data.metadata.matches[id]

# Container IDs name directories and appear in prefixes; keep them to a safe alphabet.
container_id_ok(id) if regex.match(`^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$`, id)

# Targets of layer device mounts chosen by the guest.
device_target_ok(target) if regex.match(`^/run/(layers|mounts)(/[0-9A-Za-z_-]+)+$`, target)

# ---------------------------------------------------------------------------------------------
# Regex helpers. Patterns are always wrapped as ^(?:pattern)$, so alternations cannot escape the
# anchors and `$` only matches at the very end (no multi-line mode).

anchored(pattern) := concat("", ["^(?:", pattern, ")$"])

# ---------------------------------------------------------------------------------------------
# Environment rules: {pattern, strategy: string|re2, required} on the whole NAME=value, or
# {name, name_strategy, value, value_strategy, required} on the parts split at the first '='.

strategy_match("string", pattern, value) if pattern == value

strategy_match("re2", pattern, value) if regex.match(anchored(pattern), value)

env_rule_match(rule, env) if {
	rule.pattern
	strategy_match(rule.strategy, rule.pattern, env)
}

env_rule_match(rule, env) if {
	not rule.pattern
	i := indexof(env, "=")
	i >= 0
	strategy_match(object.get(rule, "name_strategy", "string"), rule.name, substring(env, 0, i))
	strategy_match(object.get(rule, "value_strategy", "string"), rule.value, substring(env, i + 1, -1))
}

env_name(env) := substring(env, 0, indexof(env, "=")) if indexof(env, "=") >= 0

else := env

# The variables a process with these rules may keep from `envs`. This is the hot loop of
# create_container, so the rules are prepared once per call: exact strings become a set lookup
# and regexes are anchored once; the else-chain stops at the first kind that matches. (The
# regexes are not merged into one alternation: regorus caps a compiled regex at 100 KiB, and a
# merged pattern can exceed that where every single pattern does not.)
env_kept(rules, envs) := [env |
	strings := {rule.pattern | some rule in rules; rule.strategy == "string"}
	regexes := [anchored(rule.pattern) | some rule in rules; rule.strategy == "re2"]
	splits := [rule | some rule in rules; not rule.pattern]
	some env in envs
	env_kept_one(strings, regexes, splits, env)
]

env_kept_one(strings, regexes, splits, env) if strings[env]

else := true if {
	some re in regexes
	regex.match(re, env)
}

else := true if {
	some rule in splits
	env_rule_match(rule, env)
}

env_required_missing(rules, envs) if {
	some rule in rules
	rule.required == true
	not env_any_match(rule, envs)
}

env_any_match(rule, envs) if {
	some env in envs
	env_rule_match(rule, env)
}

# The environment a candidate would run with, or undefined when the candidate refuses it.
env_result(rules, envs) := kept if {
	kept := env_kept(rules, envs)
	allow_environment_variable_dropping
	not env_required_missing(rules, kept)
}

env_result(rules, envs) := envs if {
	not allow_environment_variable_dropping
	count(env_kept(rules, envs)) == count(envs)
	not env_required_missing(rules, envs)
}

env_ok(rules, envs) if env_result(rules, envs)

# ---------------------------------------------------------------------------------------------
# User: {user_idname: {pattern, strategy: any|id|name|re2}, group_idnames: [...], umask}.
# Input: {uid: {id, name}, groups: [{id, name}], umask}. A container without `user` accepts any.

idname_match(rule, _) if rule.strategy == "any"

idname_match(rule, x) if {
	rule.strategy == "id"
	rule.pattern == x.id
}

idname_match(rule, x) if {
	rule.strategy == "name"
	rule.pattern == x.name
}

idname_match(rule, x) if {
	rule.strategy == "re2"
	regex.match(anchored(rule.pattern), x.name)
}

user_ok(c, _) if object.get(c, "user", null) == null

user_ok(c, user) if {
	u := c.user
	u != null
	idname_match(u.user_idname, user.uid)
	every group in object.get(user, "groups", []) {
		some rule in object.get(u, "group_idnames", [])
		idname_match(rule, group)
	}
	object.get(u, "umask", "") in {"", object.get(user, "umask", "")}
}

# ---------------------------------------------------------------------------------------------
# Capabilities. A container whose `capabilities` is null gets the default set, or the privileged
# set when it allows elevation and the process is privileged.

cap_set_names := ["ambient", "bounding", "effective", "inheritable", "permitted"]

default_capability_list := [
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
]

privileged_capability_list := [
	"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
	"CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
	"CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
]

default_capabilities := {
	"ambient": [],
	"bounding": default_capability_list,
	"effective": default_capability_list,
	"inheritable": [],
	"permitted": default_capability_list,
}

privileged_capabilities := {
	"ambient": [],
	"bounding": privileged_capability_list,
	"effective": privileged_capability_list,
	"inheritable": privileged_capability_list,
	"permitted": privileged_capability_list,
}

policy_caps(c, privileged) := c.capabilities if object.get(c, "capabilities", null) != null

else := privileged_capabilities if {
	object.get(c, "allow_elevated", false) == true
	privileged == true
}

else := default_capabilities

input_cap_set(caps, name) := object.get(caps, name, []) if caps != null

else := []

as_set(list) := {x | some x in list}

# The capability sets a candidate would grant, or undefined when it refuses the request.
caps_result(c, privileged, caps) := {name: kept |
	allowed := policy_caps(c, privileged)
	some name in cap_set_names
	kept := [cap | some cap in input_cap_set(caps, name); cap in allowed[name]]
} if allow_capability_dropping

caps_result(c, privileged, caps) := {name: input_cap_set(caps, name) | some name in cap_set_names} if {
	not allow_capability_dropping
	allowed := policy_caps(c, privileged)
	every name in cap_set_names {
		as_set(input_cap_set(caps, name)) == as_set(object.get(allowed, name, []))
	}
}

caps_ok(c, privileged, caps) if caps_result(c, privileged, caps)

# ---------------------------------------------------------------------------------------------
# Mounts. Every input mount must match a constraint of the container, a default mount, or (for
# privileged containers that allow elevation) a privileged mount. Sources: literal, or
# `sandbox://<re2>` / `hugepages://<re2>` relative to the request's sandboxDir / hugePagesDir, or
# `plan9://` meaning a 9p mount recorded for this container.

default_mounts := [
	{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
	{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
	{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
	{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
	{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
	{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
	{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
	{"destination": "/etc/hosts", "type": "bind", "source": "sandbox:///hosts", "options": ["rbind", "rprivate", "ro"]},
	{"destination": "/etc/hostname", "type": "bind", "source": "sandbox:///hostname", "options": ["rbind", "rprivate", "ro"]},
	{"destination": "/etc/resolv.conf", "type": "bind", "source": "sandbox:///resolv.conf", "options": ["rbind", "rprivate", "ro"]},
]

privileged_mounts := [
	{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]},
	{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "rw"]},
]

path_has_dotdot(path) if {
	some part in split(path, "/")
	part == ".."
}

prefixed_source_ok(pattern, source, scheme, dir) if {
	startswith(pattern, scheme)
	dir != ""
	startswith(dir, "/")
	not path_has_dotdot(dir)
	startswith(source, concat("", [dir, "/"]))
	regex.match(anchored(substring(pattern, count(scheme), -1)), substring(source, count(dir), -1))
}

mount_source_ok(pattern, source) if {
	not startswith(pattern, "sandbox://")
	not startswith(pattern, "hugepages://")
	not startswith(pattern, "plan9://")
	pattern == source
}

mount_source_ok(pattern, source) if prefixed_source_ok(pattern, source, "sandbox://", object.get(input, "sandboxDir", ""))

mount_source_ok(pattern, source) if prefixed_source_ok(pattern, source, "hugepages://", object.get(input, "hugePagesDir", ""))

mount_source_ok(pattern, source) if {
	startswith(pattern, "plan9://")
	data.metadata.p9mounts[source] == input.containerID
}

mount_constraint_ok(constraint, mount) if {
	constraint.destination != ""
	constraint.destination == mount.destination
	constraint.type == mount.type
	as_set(constraint.options) == as_set(mount.options)
	not path_has_dotdot(mount.source)
	mount_source_ok(constraint.source, mount.source)
}

mount_allowed(c, _, mount) if {
	some constraint in object.get(c, "mounts", [])
	mount_constraint_ok(constraint, mount)
}

mount_allowed(_, _, mount) if {
	some constraint in default_mounts
	mount_constraint_ok(constraint, mount)
}

mount_allowed(c, privileged, mount) if {
	privileged == true
	object.get(c, "allow_elevated", false) == true
	some constraint in privileged_mounts
	mount_constraint_ok(constraint, mount)
}

mounts_ok(c, privileged, mounts) if {
	every mount in mounts {
		mount_allowed(c, privileged, mount)
	}
}

# ---------------------------------------------------------------------------------------------
# Candidate names for explanations.

candidate_name(c, i) := c.name if is_string(object.get(c, "name", null))

else := c.id if is_string(object.get(c, "id", null))

else := sprintf("#%d", [i])

# ---------------------------------------------------------------------------------------------
# Deny reason (same shape as ACI's `data.framework.reason`).

reason := {"errors": errors, "error_objects": error_objects}

default error_objects := []
