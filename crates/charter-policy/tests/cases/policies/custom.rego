package policy

api_version := "0.10.0"

containers := []

# A hand-written rule: properties readable only when a constant says so.
debug_build := true

get_properties := {"allowed": true} if debug_build

dump_stacks := data.framework.dump_stacks

reason := data.framework.reason
