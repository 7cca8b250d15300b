# charter framework, part 3: container and process enforcement points.
#
# Candidate narrowing: mount_overlay records the indices of all policy containers whose layers
# match (`matches[containerID]`); create_container, exec_in_container and
# signal_container_process keep only the candidates that accept the request and write the
# survivors back. Survivors that would run the process differently (stdio, kept environment,
# kept capabilities) make the request undecidable, which is a denial.
package framework

candidate_indices(id) := data.metadata.matches[id] if container_matched(id)

else := []

# ---------------------------------------------------------------------------------------------
# create_container {containerID, argList, envList, workingDir, sandboxDir, hugePagesDir, mounts,
# privileged, noNewPrivileges, user, capabilities, seccompProfileSHA256}

create_checks := ["command", "working_dir", "env", "mounts", "privileged", "no_new_privileges", "user", "seccomp", "capabilities"]

default input_privileged := false

input_privileged := input.privileged == true

create_check_ok("command", _, c) if c.command == input.argList

create_check_ok("working_dir", _, c) if c.working_dir == input.workingDir

create_check_ok("env", i, _) if create_env_map[i] != null

create_check_ok("mounts", _, c) if mounts_ok(c, input_privileged, object.get(input, "mounts", []))

create_check_ok("privileged", _, c) if not input_privileged

create_check_ok("privileged", _, c) if object.get(c, "allow_elevated", false) == true

create_check_ok("no_new_privileges", _, c) if object.get(c, "no_new_privileges", false) != true

create_check_ok("no_new_privileges", _, _) if input.noNewPrivileges == true

create_check_ok("user", _, c) if user_ok(c, object.get(input, "user", {}))

create_check_ok("seccomp", _, c) if object.get(c, "seccomp_profile_sha256", "") == object.get(input, "seccompProfileSHA256", "")

create_check_ok("capabilities", _, c) if caps_ok(c, input_privileged, object.get(input, "capabilities", null))

create_failures(i) := [check | some check in create_checks; not create_check_ok(check, i, policy_containers[i])]

create_candidates := candidate_indices(input.containerID)

# The environment each candidate would run with (null: refused), computed once.
create_env_map := {i: env_or_null(object.get(policy_containers[i], "env_rules", []), input.envList) | some i in create_candidates}

create_failure_map := {i: create_failures(i) | some i in create_candidates}

create_survivors := [i | some i in create_candidates; count(create_failure_map[i]) == 0]

create_env_lists := {create_env_map[i] | some i in create_survivors}

create_caps_lists := {caps_result(policy_containers[i], input_privileged, object.get(input, "capabilities", null)) | some i in create_survivors}

create_stdio := {stdio_flag(policy_containers[i]) | some i in create_survivors}

default create_container := {"allowed": false}

create_container := {
	"allowed": true,
	"env_list": only(create_env_lists),
	"caps_list": only(create_caps_lists),
	"allow_stdio_access": only(create_stdio),
	"metadata": [
		{"name": "matches", "action": "update", "key": input.containerID, "value": create_survivors},
		{"name": "started", "action": "add", "key": input.containerID, "value": {"privileged": input_privileged}},
	],
} if {
	not container_started(input.containerID)
	count(create_survivors) > 0
	count(create_env_lists) == 1
	count(create_caps_lists) == 1
	count(create_stdio) == 1
}

stdio_flag(c) := true if object.get(c, "allow_stdio_access", false) == true

else := false

env_or_null(rules, envs) := env if {
	env := env_result(rules, envs)
} else := null

only(s) := x if {
	some x in s
	count(s) == 1
}

create_error(check, _) := "invalid command" if check == "command"

create_error(check, _) := "invalid working directory" if check == "working_dir"

create_error(check, c) := msg if {
	check == "env"
	kept := {env | some env in env_kept(object.get(c, "env_rules", []), input.envList)}
	bad := [env_name(env) | some env in input.envList; not kept[env]]
	count(bad) > 0
	not allow_environment_variable_dropping
	msg := concat("", ["invalid env list: ", concat(",", bad)])
}

else := "missing required environment variable" if check == "env"

create_error(check, c) := msg if {
	check == "mounts"
	bad := [m.destination | some m in object.get(input, "mounts", []); not mount_allowed(c, input_privileged, m)]
	msg := concat("", ["invalid mount list: ", concat(",", bad)])
}

create_error(check, _) := "privileged escalation not allowed" if check == "privileged"

create_error(check, _) := "invalid noNewPrivileges" if check == "no_new_privileges"

create_error(check, _) := "invalid user" if check == "user"

create_error(check, _) := "invalid seccomp" if check == "seccomp"

create_error(check, _) := "capabilities don't match" if check == "capabilities"

# The nearest candidate: fewest failed checks, earliest in the policy on ties.
nearest(cands, failures) := {"index": i, "failures": failures[i]} if {
	count(cands) > 0
	best := min({count(f) | some f in failures})
	i := min({j | some j in cands; count(failures[j]) == best})
}

create_nearest := nearest(create_candidates, create_failure_map) if count(create_survivors) == 0

errors contains "container already started" if {
	input.rule == "create_container"
	container_started(input.containerID)
}

errors contains "container has no matching overlay" if {
	input.rule == "create_container"
	count(create_candidates) == 0
}

errors contains msg if {
	input.rule == "create_container"
	n := create_nearest
	c := policy_containers[n.index]
	msg := sprintf("nearest container %s (policy index %d) differs in: %s", [candidate_name(c, n.index), n.index, concat(", ", n.failures)])
}

errors contains msg if {
	input.rule == "create_container"
	n := create_nearest
	msg := create_error(n.failures[0], policy_containers[n.index])
}

errors contains "containers only distinguishable by allow_stdio_access" if {
	input.rule == "create_container"
	count(create_stdio) > 1
}

errors contains "containers only distinguishable by dropped environment variables" if {
	input.rule == "create_container"
	count(create_env_lists) > 1
}

errors contains "containers only distinguishable by dropped capabilities" if {
	input.rule == "create_container"
	count(create_caps_lists) > 1
}

error_objects := [policy_containers[i] | some i in create_candidates] if input.rule == "create_container"

# ---------------------------------------------------------------------------------------------
# exec_in_container {containerID, argList, envList, workingDir, noNewPrivileges, user,
# capabilities}: the process runs in a started container with the container's working dir,
# user, privileges and env rules; its argv must be one of the container's `exec_processes`.

default exec_privileged := false

exec_privileged := data.metadata.started[input.containerID].privileged == true

exec_checks := ["command", "working_dir", "env", "no_new_privileges", "user", "capabilities"]

exec_check_ok("command", _, c) if {
	some p in object.get(c, "exec_processes", [])
	p.command == input.argList
}

exec_check_ok("working_dir", _, c) if c.working_dir == input.workingDir

exec_check_ok("env", i, _) if exec_env_map[i] != null

exec_check_ok("no_new_privileges", _, c) if object.get(c, "no_new_privileges", false) != true

exec_check_ok("no_new_privileges", _, _) if input.noNewPrivileges == true

exec_check_ok("user", _, c) if user_ok(c, object.get(input, "user", {}))

exec_check_ok("capabilities", _, c) if caps_ok(c, exec_privileged, object.get(input, "capabilities", null))

exec_failures(i) := [check | some check in exec_checks; not exec_check_ok(check, i, policy_containers[i])]

exec_candidates := candidate_indices(input.containerID) if container_started(input.containerID)

else := []

# The environment each candidate would run with (null: refused), computed once.
exec_env_map := {i: env_or_null(object.get(policy_containers[i], "env_rules", []), input.envList) | some i in exec_candidates}

exec_failure_map := {i: exec_failures(i) | some i in exec_candidates}

exec_survivors := [i | some i in exec_candidates; count(exec_failure_map[i]) == 0]

exec_env_lists := {exec_env_map[i] | some i in exec_survivors}

exec_caps_lists := {caps_result(policy_containers[i], exec_privileged, object.get(input, "capabilities", null)) | some i in exec_survivors}

exec_stdio := {stdio_flag(policy_containers[i]) | some i in exec_survivors}

default exec_in_container := {"allowed": false}

exec_in_container := {
	"allowed": true,
	"env_list": only(exec_env_lists),
	"caps_list": only(exec_caps_lists),
	"allow_stdio_access": only(exec_stdio),
	"metadata": [{"name": "matches", "action": "update", "key": input.containerID, "value": exec_survivors}],
} if {
	count(exec_survivors) > 0
	count(exec_env_lists) == 1
	count(exec_caps_lists) == 1
	count(exec_stdio) == 1
}

exec_nearest := nearest(exec_candidates, exec_failure_map) if count(exec_survivors) == 0

errors contains "container not started" if {
	input.rule == "exec_in_container"
	count(exec_candidates) == 0
}

errors contains msg if {
	input.rule == "exec_in_container"
	n := exec_nearest
	c := policy_containers[n.index]
	msg := sprintf("nearest container %s (policy index %d) differs in: %s", [candidate_name(c, n.index), n.index, concat(", ", n.failures)])
}

errors contains msg if {
	input.rule == "exec_in_container"
	n := exec_nearest
	msg := create_error(n.failures[0], policy_containers[n.index])
}

errors contains "containers only distinguishable by allow_stdio_access" if {
	input.rule == "exec_in_container"
	count(exec_stdio) > 1
}

errors contains "containers only distinguishable by dropped environment variables" if {
	input.rule == "exec_in_container"
	count(exec_env_lists) > 1
}

errors contains "containers only distinguishable by dropped capabilities" if {
	input.rule == "exec_in_container"
	count(exec_caps_lists) > 1
}

error_objects := [p | some i in exec_candidates; some p in object.get(policy_containers[i], "exec_processes", [])] if input.rule == "exec_in_container"

# ---------------------------------------------------------------------------------------------
# exec_external {argList, envList, workingDir}: a process in the utility VM outside containers.

external_checks := ["command", "working_dir", "env"]

external_check_ok("command", p) if p.command == input.argList

external_check_ok("working_dir", p) if p.working_dir == input.workingDir

external_check_ok("env", p) if env_ok(object.get(p, "env_rules", []), input.envList)

external_failures(p) := [check | some check in external_checks; not external_check_ok(check, p)]

external_failure_map := {i: external_failures(p) | some i, p in policy_external_processes}

external_survivors := [i | some i, _ in policy_external_processes; count(external_failure_map[i]) == 0]

external_env_lists := {env_result(object.get(policy_external_processes[i], "env_rules", []), input.envList) | some i in external_survivors}

external_stdio := {stdio_flag(policy_external_processes[i]) | some i in external_survivors}

default exec_external := {"allowed": false}

exec_external := {
	"allowed": true,
	"env_list": only(external_env_lists),
	"allow_stdio_access": only(external_stdio),
} if {
	count(external_survivors) > 0
	count(external_env_lists) == 1
	count(external_stdio) == 1
}

external_indices := [i | some i, _ in policy_external_processes]

external_nearest := nearest(external_indices, external_failure_map) if {
	count(external_survivors) == 0
	count(external_indices) > 0
}

errors contains "no external processes in policy" if {
	input.rule == "exec_external"
	count(policy_external_processes) == 0
}

errors contains msg if {
	input.rule == "exec_external"
	n := external_nearest
	msg := sprintf("nearest external process %s differs in: %s", [json.marshal(policy_external_processes[n.index].command), concat(", ", n.failures)])
}

errors contains msg if {
	input.rule == "exec_external"
	n := external_nearest
	msg := create_error(n.failures[0], policy_external_processes[n.index])
}

errors contains "external processes only distinguishable by allow_stdio_access" if {
	input.rule == "exec_external"
	count(external_stdio) > 1
}

errors contains "external processes only distinguishable by dropped environment variables" if {
	input.rule == "exec_external"
	count(external_env_lists) > 1
}

error_objects := policy_external_processes if input.rule == "exec_external"

# ---------------------------------------------------------------------------------------------
# shutdown_container {containerID}: the container must have been started and not shut down.
# `started` is never removed, so a container ID cannot be reused.

default shutdown_container := {"allowed": false}

shutdown_container := {"allowed": true, "metadata": [{"name": "matches", "action": "remove", "key": input.containerID}]} if {
	container_started(input.containerID)
	container_matched(input.containerID)
}

errors contains "container not started" if {
	input.rule == "shutdown_container"
	not container_started(input.containerID)
}

errors contains "container already shut down" if {
	input.rule == "shutdown_container"
	container_started(input.containerID)
	not container_matched(input.containerID)
}

# ---------------------------------------------------------------------------------------------
# signal_container_process {containerID, signal, isInitProcess, argList}

signal_ok(c) if {
	input.isInitProcess == true
	input.signal in object.get(c, "signals", [])
}

signal_ok(c) if {
	input.isInitProcess != true
	some p in object.get(c, "exec_processes", [])
	p.command == input.argList
	input.signal in object.get(p, "signals", [])
}

signal_candidates := candidate_indices(input.containerID) if container_started(input.containerID)

else := []

signal_survivors := [i | some i in signal_candidates; signal_ok(policy_containers[i])]

default signal_container_process := {"allowed": false}

signal_container_process := {"allowed": true, "metadata": [{"name": "matches", "action": "update", "key": input.containerID, "value": signal_survivors}]} if {
	count(signal_survivors) > 0
}

errors contains "container not started" if {
	input.rule == "signal_container_process"
	count(signal_candidates) == 0
}

errors contains "target isn't allowed to receive the signal" if {
	input.rule == "signal_container_process"
	count(signal_candidates) > 0
	count(signal_survivors) == 0
}

error_objects := [policy_containers[i] | some i in signal_candidates] if input.rule == "signal_container_process"
