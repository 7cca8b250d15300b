#!/usr/bin/env python3
"""Writes an OCI image layout from layer tars, for the demo and for manual testing.

usage: mkimage.py OUT_DIR TAG LAYER.tar[:gzip|:zstd|:none] ... [--entrypoint CMD ...]

Blobs are compressed as asked (gzip by default, deterministic: no name, mtime 0), and the
config lists each layer's diff_id. Only the Python standard library and the zstd CLI are used.
"""
import gzip, hashlib, json, os, subprocess, sys


def put_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out, tag, rest = argv[1], argv[2], argv[3:]
    entrypoint = ["/bin/sh"]
    if "--entrypoint" in rest:
        i = rest.index("--entrypoint")
        entrypoint, rest = rest[i + 1:], rest[:i]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers, diff_ids = [], []
    for spec in rest:
        path, _, comp = spec.partition(":")
        comp = comp or "gzip"
        raw = open(path, "rb").read()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        if comp == "gzip":
            blob, mt = gzip.compress(raw, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif comp == "zstd":
            blob = subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, stdout=subprocess.PIPE, check=True).stdout
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        elif comp == "none":
            blob, mt = raw, "application/vnd.oci.image.layer.v1.tar"
        else:
            sys.exit(f"unknown compression {comp!r}")
        digest, size = put_blob(out, blob)
        layers.append({"mediaType": mt, "digest": digest, "size": size})
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/usr/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdigest, csize = put_blob(out, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": layers,
    }
    mdigest, msize = put_blob(out, json.dumps(manifest, sort_keys=True).encode())
    index_path = os.path.join(out, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        index = json.load(open(index_path))
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    with open(index_path, "w") as f:
        json.dump(index, f, indent=2)
    print(mdigest)


if __name__ == "__main__":
    main(sys.argv)
