#!/usr/bin/env bash
# `charter policy generate` on a ~1 GiB (uncompressed) multi-layer image: cold (empty cache),
# warm (every layer cached), peak RSS, and in the same run the peer tool chain a tenant would
# run per layer without charter (ACI/Kata style: decompress + `tar -x` + `mkfs.erofs` +
# `veritysetup format`; erofs-utils 1.5 has no tar input), with the ratio.
#
#   bash bench/generate.sh                 # 8 x 128 MiB layers + busybox (the issue's figure)
#   LAYERS=4 LAYER_MIB=64 bash bench/generate.sh
#
# Goals (issue #5): cold >= 500 MB/s over the uncompressed layer bytes, warm < 100 ms,
# RSS < 256 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
missing=$(charter_missing_debs)
if [ -n "$missing" ]; then
  echo "bench: missing Debian packages: $missing (run scripts/deps.sh as root)" >&2
  exit 1
fi
layers=${LAYERS:-8}
layer_mib=${LAYER_MIB:-128}
target=${CARGO_TARGET_DIR:-$PWD/target}
CARGO_TARGET_DIR=$target cargo build --release --locked -q -p charter
charter=$target/release/charter
work=$(mktemp -d "${TMPDIR:-/var/tmp}/charter-bench-gen.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work  # scratch files go here (charter measures layers without writing images)

# Layers: busybox + /etc/passwd and /etc/group at the base, then $layers layers of
# incompressible files of mixed sizes (zstd blobs, as current registries serve them).
python3 - "$work" "$layers" "$layer_mib" <<'PY'
import io, os, random, sys, tarfile
work, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)

def add(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.type, info.linkname = 0, mode, kind, link
    info.size = len(data) if data is not None else 0
    t.addfile(info, io.BytesIO(data) if data is not None else None)

with tarfile.open(f"{work}/layer0.tar", "w", format=tarfile.GNU_FORMAT) as t:
    for d in ["bin", "etc", "usr", "usr/bin"]:
        add(t, d, kind=tarfile.DIRTYPE, mode=0o755)
    add(t, "usr/bin/busybox", open("/usr/bin/busybox", "rb").read(), 0o755)
    add(t, "bin/sh", kind=tarfile.SYMTYPE, link="/usr/bin/busybox", mode=0o777)
    add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    add(t, "etc/group", b"root:x:0:\napp:x:1001:\n")
for n in range(1, count + 1):
    total, written, i = mib << 20, 0, 0
    with tarfile.open(f"{work}/layer{n}.tar", "w", format=tarfile.GNU_FORMAT) as t:
        while written < total:
            r = rng.random()
            size = rng.randint(1 << 10, 64 << 10) if r < 0.9 else (
                rng.randint(64 << 10, 4 << 20) if r < 0.995 else 16 << 20)
            size = min(size, total - written)
            add(t, f"srv/l{n}/d{i // 500:03d}/f{i:06d}", rng.randbytes(size))
            written, i = written + size, i + 1
PY
specs=("$work/layer0.tar:gzip")
for n in $(seq 1 "$layers"); do specs+=("$work/layer$n.tar:zstd"); done
python3 scripts/mkimage.py "$work/layout" app "${specs[@]}" --entrypoint /usr/bin/busybox sleep >/dev/null
tar_bytes=0
for n in $(seq 0 "$layers"); do tar_bytes=$((tar_bytes + $(stat -c %s "$work/layer$n.tar"))); done
rm -f "$work"/layer*.tar
cat "$work"/layout/blobs/sha256/* >/dev/null  # warm the page cache for both contenders

cat >"$work/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: bench}
spec:
  containers:
    - name: app
      image: bench.example/app:1
      args: ["3600"]
      securityContext: {runAsUser: 1000}
YAML

calc() { python3 -c "print($1)"; }
now() { date +%s.%N; }
best() { sort -g | head -1; }
# Peak RSS (KiB) of a command: GNU time if present, else the kernel's VmHWM sampled by a
# wrapper shell that execs the command.
peak_rss() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null
    cat "$work/rss"
  else
    "$@" >/dev/null & local pid=$! hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
      v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
      sleep 0.01
    done
    wait "$pid"
    echo "$hwm"
  fi
}
gen_cmd=("$charter" policy generate "$work/pod.yaml" -q --offline
  --image "bench.example/app:1=oci:$work/layout:app"
  --cache-dir "$work/cache" -o "$work/policy.rego")
generate() { "${gen_cmd[@]}" >/dev/null; }

cold_times=()
for i in 1 2 3; do
  rm -rf "$work/cache"; sync
  t0=$(now); generate; t1=$(now)
  cold_times+=("$(calc "$t1 - $t0")")
done
cold_digest=$(sha256sum "$work/policy.rego" | cut -d' ' -f1)
warm_times=()
for i in 1 2 3 4 5; do
  t0=$(now); generate; t1=$(now)
  warm_times+=("$(calc "$t1 - $t0")")
done
[ "$(sha256sum "$work/policy.rego" | cut -d' ' -f1)" = "$cold_digest" ] || {
  echo "bench: warm policy differs from cold" >&2; exit 1; }
rm -rf "$work/cache"
cold_rss=$(peak_rss "${gen_cmd[@]}")
warm_rss=$(peak_rss "${gen_cmd[@]}")

# The peer: per layer, what `umoci raw unpack` / `tar -x` + mkfs.erofs + veritysetup do.
peer_times=()
blobs=$(python3 - "$work/layout" <<'PY'
import json, sys
root = sys.argv[1]
index = json.load(open(f"{root}/index.json"))
m = json.load(open(f"{root}/blobs/sha256/" + index["manifests"][0]["digest"][7:]))
for l in m["layers"]:
    print(l["digest"][7:], "zstd" if l["mediaType"].endswith("zstd") else "gzip")
PY
)
for i in 1 2; do
  t0=$(now)
  n=0
  while read -r blob comp; do
    rm -rf "$work/x" "$work/p.img"; mkdir "$work/x"
    if [ "$comp" = zstd ]; then
      zstd -q -d -c "$work/layout/blobs/sha256/$blob" | tar -C "$work/x" -xf -
    else
      tar -C "$work/x" -xzf "$work/layout/blobs/sha256/$blob"
    fi
    mkfs.erofs --quiet -T0 -U 00000000-0000-0000-0000-000000000000 "$work/p.img" "$work/x" >/dev/null
    psize=$(stat -c %s "$work/p.img")
    veritysetup format "$work/p.img" "$work/p.img" --hash-offset="$psize" \
      --salt=0000000000000000000000000000000000000000000000000000000000000000 \
      --uuid=00000000-0000-0000-0000-000000000000 >/dev/null
    n=$((n + 1))
  done <<<"$blobs"
  t1=$(now)
  peer_times+=("$(calc "$t1 - $t0")")
done
rm -rf "$work/x" "$work/p.img"

c=$(printf '%s\n' "${cold_times[@]}" | best)
w=$(printf '%s\n' "${warm_times[@]}" | best)
p=$(printf '%s\n' "${peer_times[@]}" | best)
printf '\nimage: %d layers, %d MiB uncompressed, %s cores\n' "$((layers + 1))" $((tar_bytes >> 20)) "$(nproc)"
printf '%-52s %9s %9s %10s\n' "contender" "best s" "MB/s" "max RSS"
printf '%-52s %9.3f %9.0f %7d MiB\n' "charter policy generate, cold (empty cache)" "$c" \
  "$(calc "$tar_bytes / $c / 1000000")" $((cold_rss / 1024))
printf '%-52s %9.3f %9s %7d MiB\n' "charter policy generate, warm (cached)" "$w" "-" $((warm_rss / 1024))
printf '%-52s %9.3f %9.0f\n' "peer: unzstd|tar -x + mkfs.erofs + veritysetup" "$p" \
  "$(calc "$tar_bytes / $p / 1000000")"
printf 'warm: %.1f ms (goal < 100 ms); cold: goal >= 500 MB/s, RSS < 256 MiB\n' "$(calc "$w * 1000")"
printf 'ratio peer/charter cold: %.2fx faster\n' "$(calc "$p / $c")"
