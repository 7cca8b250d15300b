package policy

api_version := "0.6.0"

containers := []

# Written for api 0.6.0 and deliberately without mount_device, which 0.6.0 already had.
mount_overlay := data.framework.mount_overlay

reason := data.framework.reason
