#!/usr/bin/env bash
# charter's main job on the embedded defaults. For now (issue [layers]): build a sample image
# from busybox-static, turn its layers into dm-verity protected EROFS images, cross-check the
# root hashes with veritysetup, and measure the image from an OCI layout and a docker archive.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
charter_install_deps
cargo build --release --locked -q -p charter
charter=$PWD/target/release/charter
work=$(mktemp -d "${TMPDIR:-/tmp}/charter-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CHARTER_CACHE_DIR=$work/cache

echo "== 1. a sample image: busybox-static as a base layer, an app layer on top"
mkdir -p "$work/base/bin" "$work/base/etc" "$work/app/srv" "$work/app/etc"
cp "$(command -v busybox)" "$work/base/bin/busybox"
for tool in sh ls cat echo sleep; do ln -s busybox "$work/base/bin/$tool"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/base/etc/group"
echo "hello from a verified layer" >"$work/app/srv/message"
: >"$work/app/etc/.wh.group"  # an OCI whiteout: the app layer deletes /etc/group
for l in base app; do
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/$l" -cf "$work/$l.tar" .
done
python3 scripts/mkimage.py "$work/layout" demo "$work/base.tar:gzip" "$work/app.tar:zstd" \
  --entrypoint /bin/cat /srv/message >/dev/null

echo "== 2. charter layer build: EROFS + appended dm-verity tree"
root=$("$charter" layer build -q "$work/base.tar" -o "$work/base.img")
echo "root hash: $root"
fsck.erofs "$work/base.img" >/dev/null 2>&1 || { echo "fsck.erofs rejected the image" >&2; exit 1; }
data_size=$("$charter" layer verify -q --json "$work/base.img" --root-hash "$root" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data_size"])')
veritysetup verify "$work/base.img" "$work/base.img" "$root" --hash-offset="$data_size"
echo "veritysetup verify: ok (same root hash, independent implementation)"

echo "== 3. a flipped byte is caught and located (the error below is expected)"
cp "$work/base.img" "$work/bad.img"
printf '\xff' | dd of="$work/bad.img" bs=1 seek=$((data_size / 2)) conv=notrunc status=none
if "$charter" layer verify -q "$work/bad.img" --root-hash "$root"; then
  echo "corruption not detected" >&2; exit 1
fi

echo "== 4. charter image measure (OCI layout, then again from the cache)"
"$charter" image measure -q "oci:$work/layout:demo"
"$charter" image measure -q "oci:$work/layout:demo" | grep cached >/dev/null
echo "second run served from the cache"

echo "== 5. the same layers as a docker archive (written by skopeo) measure the same"
# Docker archives cannot hold zstd layers: store the app layer uncompressed there. Layer identity
# depends on the tar, never on how the blob was compressed.
python3 scripts/mkimage.py "$work/layout" docker "$work/base.tar:gzip" "$work/app.tar:none" \
  --entrypoint /bin/cat /srv/message >/dev/null
skopeo copy -q "oci:$work/layout:docker" "docker-archive:$work/demo.tar:demo:latest"
"$charter" image measure -q --no-cache "docker-archive:$work/demo.tar"
a=$("$charter" image measure -q --json "oci:$work/layout:demo" | python3 -c 'import json,sys; print([l["root_hash"] for l in json.load(sys.stdin)["layers"]])')
b=$("$charter" image measure -q --json --no-cache "$work/demo.tar" | python3 -c 'import json,sys; print([l["root_hash"] for l in json.load(sys.stdin)["layers"]])')
[ "$a" = "$b" ] || { echo "layout and archive disagree: $a vs $b" >&2; exit 1; }
echo "demo: ok"
