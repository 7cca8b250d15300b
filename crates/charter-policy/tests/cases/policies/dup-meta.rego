package policy

api_version := "0.10.0"

get_properties := {"allowed": true, "metadata": [{"name": "custom", "action": "add", "key": "k", "value": 1}]}
