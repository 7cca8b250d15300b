#!/usr/bin/env python3
"""Times OPA (from the PyPI wheel opa-golib-python-bindings) on charter's framework.

usage: opa_bench.py BRIDGE_DIR REGO_DIR < job.json
job: {"policy": text, "metadata": {...}, "queries": [{"name", "rule", "input", "runs", "reason"?}]}
prints [{"name", "p50_us", "p99_us", "allowed"}] in query order (includes ~17 us of
Python/ctypes overhead per evaluation, measured in the survey). With "reason": true the
decision and `data.policy.reason` are evaluated together in one query, as a denial needs.
"""

import json
import os
import sys
import time


def main():
    bridge, rego_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, bridge)
    from opa_bindings import OpaEngine

    job = json.load(sys.stdin)
    e = OpaEngine()
    for name in sorted(os.listdir(rego_dir)):
        if name.endswith(".rego"):
            with open(os.path.join(rego_dir, name)) as f:
                e.add_policy(name, f.read())
    e.add_policy("policy.rego", job["policy"])
    e.add_data({"metadata": job["metadata"]})
    out = []
    for q in job["queries"]:
        path = "policy." + q["rule"]
        if q.get("reason"):
            query = "d := data.%s; r := data.policy.reason" % path

            def run():
                rs = e.eval_query(query, q["input"])
                return rs[0]["d"] if rs else None
        else:

            def run():
                return e.eval_document(path, q["input"])

        result = None
        for _ in range(max(10, q["runs"] // 10)):
            result = run()
        times = []
        for _ in range(q["runs"]):
            t0 = time.perf_counter_ns()
            run()
            times.append(time.perf_counter_ns() - t0)
        times.sort()
        out.append({
            "name": q["name"],
            "p50_us": times[len(times) // 2] / 1000,
            "p99_us": times[min(len(times) - 1, len(times) * 99 // 100)] / 1000,
            "allowed": bool(result and result.get("allowed")),
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
