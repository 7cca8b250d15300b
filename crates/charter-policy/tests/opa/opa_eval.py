#!/usr/bin/env python3
"""Evaluates charter's case table with real OPA (the Go engine from the PyPI wheel
`opa-golib-python-bindings`, loaded through its ctypes module).

usage: opa_eval.py BRIDGE_DIR REGO_DIR < table.json > decisions.json

BRIDGE_DIR contains the unpacked wheel (the `opa_bindings` package with `libopabridge.so`);
REGO_DIR is crates/charter-policy/rego. The table is
{"cases": [{"name", "policy", "steps": [{"rule", "input"}]}]} with inputs exactly as charter's
enforcer sees them. The output mirrors it: {"cases": [{"name", "steps": [decision]}]} where a
decision is {"allowed", "errors", "env_list", "caps_list", "allow_stdio_access"}.

The enforcer semantics around the Rego (API defaults for points newer than the policy, metadata
ops, "add on an existing key is an error") are re-implemented here from the same description,
so a difference in either shows up as a mismatch.
"""

import copy
import json
import os
import re
import sys


def version(text):
    parts = [int(p) for p in str(text).split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def declared(policy, name):
    return re.search(r"^\s*" + re.escape(name) + r"\s*(:=|=|if\b|\{|contains\b)", policy, re.M) is not None


def apply_ops(metadata, ops):
    nxt = copy.deepcopy(metadata)
    for op in ops or []:
        m = nxt.setdefault(op["name"], {})
        key = op["key"]
        if op["action"] == "add":
            if key in m:
                raise ValueError("add on existing key")
            m[key] = op.get("value")
        elif op["action"] == "update":
            m[key] = op.get("value")
        elif op["action"] == "remove":
            if key not in m:
                raise ValueError("remove of missing key")
            del m[key]
        else:
            raise ValueError("unknown action")
    return nxt


def main():
    bridge, rego_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, bridge)
    from opa_bindings import OpaEngine, OpaUndefinedError  # noqa: E402

    modules = {}
    for name in sorted(os.listdir(rego_dir)):
        if name.endswith(".rego"):
            with open(os.path.join(rego_dir, name)) as f:
                modules[name] = f.read()

    def engine_for(policy, metadata):
        e = OpaEngine()
        for name, text in modules.items():
            e.add_policy(name, text)
        e.add_policy("policy.rego", policy)
        e.add_data({"metadata": metadata})
        return e

    def doc(e, path, inp):
        try:
            return e.eval_document(path, inp)
        except OpaUndefinedError:
            return None

    table = json.load(sys.stdin)
    out = []
    for case in table["cases"]:
        policy = case["policy"]
        metadata = {}
        engine = engine_for(policy, metadata)
        points = doc(engine, "api.enforcement_points", {})
        api = doc(engine, "policy.api_version", {}) if declared(policy, "api_version") else None
        if api is None:
            api = doc(engine, "policy.api_svn", {})
        steps = []
        for step in case["steps"]:
            rule, inp = step["rule"], step["input"]
            if declared(policy, rule):
                result = doc(engine, "policy." + rule, inp)
            elif version(points[rule]["introducedVersion"]) > version(api):
                result = points[rule]["default_results"]
            else:
                result = None
            allowed = isinstance(result, dict) and result.get("allowed") is True
            decision = {"allowed": allowed, "errors": [], "env_list": None, "caps_list": None,
                        "allow_stdio_access": False}
            ops_failed = False
            if allowed:
                try:
                    new_md = apply_ops(metadata, result.get("metadata"))
                except ValueError:
                    ops_failed = True
                    decision["allowed"] = False
                else:
                    decision["env_list"] = result.get("env_list")
                    decision["caps_list"] = result.get("caps_list")
                    decision["allow_stdio_access"] = result.get("allow_stdio_access") is True
                    if new_md != metadata:
                        metadata = new_md
                        engine = engine_for(policy, metadata)
            if not decision["allowed"] and not ops_failed and declared(policy, rule) and declared(policy, "reason"):
                reason = doc(engine, "policy.reason", inp) or {}
                decision["errors"] = sorted(reason.get("errors") or [])
            steps.append(decision)
        out.append({"name": case["name"], "steps": steps})
    json.dump({"cases": out}, sys.stdout)


if __name__ == "__main__":
    main()
