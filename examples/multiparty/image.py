#!/usr/bin/env python3
"""Writes the workload image as an OCI image layout (tag `1`): busybox-static with the applets
the join needs, and join.sh. One uncompressed layer, mtime 0: the same bytes on every run."""
import hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
applets = ["sh", "awk", "cat", "wc", "echo", "printf", "wget", "grep"]

def entry(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.type, info.linkname = 0, mode, kind, link
    info.uname = info.gname = "root"
    info.size = len(data) if data is not None else 0
    t.addfile(info, io.BytesIO(data) if data is not None else None)

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for d in ["bin", "app", "data", "etc", "tmp"]:
        entry(t, d, mode=0o755, kind=tarfile.DIRTYPE)
    entry(t, "bin/busybox", open("/bin/busybox", "rb").read(), 0o755)
    for a in applets:
        entry(t, "bin/" + a, kind=tarfile.SYMTYPE, link="busybox")
    entry(t, "app/join.sh", open(os.path.join(here, "join.sh"), "rb").read(), 0o755)
    entry(t, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    entry(t, "etc/group", b"root:x:0:\n")
layer = buf.getvalue()

def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}

layer_desc = blob(layer)
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/bin"], "WorkingDir": "/"},
    "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
}, sort_keys=True).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
}, sort_keys=True).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
    "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
