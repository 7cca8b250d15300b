package policy

api_version := "0.10.0"

get_properties := {"allowed": "yes"}

reason := data.framework.reason
