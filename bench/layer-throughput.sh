#!/usr/bin/env bash
# tar -> EROFS + dm-verity throughput on a layer of mixed file sizes, charter vs the peer tool
# chain in the same run (erofs-utils 1.5 has no tar input, so the peer is `tar -x` +
# `mkfs.erofs` + `veritysetup format`, the way a tenant would do it without charter).
#
#   bash bench/layer-throughput.sh            # 1 GiB layer (the issue's figure)
#   SIZE_MIB=256 bash bench/layer-throughput.sh
#
# Prints best-of-3 wall times, MB/s over the tar size, and the ratio. Goal: >= 600 MB/s on
# two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
charter_install_deps
size_mib=${SIZE_MIB:-1024}
cargo build --release --locked -q -p charter
charter=$PWD/target/release/charter
work=$(mktemp -d "${TMPDIR:-/var/tmp}/charter-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$work/src" "$size_mib" <<'PY'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(42)
written, n = 0, 0
# About half the bytes in files of 1-64 KiB, a third in 64 KiB-4 MiB, the rest in 32 MiB files.
while written < total:
    r = rng.random()
    size = rng.randint(1 << 10, 64 << 10) if r < 0.9 else (
        rng.randint(64 << 10, 4 << 20) if r < 0.995 else 32 << 20)
    size = min(size, total - written)
    d = os.path.join(root, f"d{n // 500:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{n:06d}"), "wb") as f:
        f.write(rng.randbytes(size))
    written += size
    n += 1
print(f"{n} files, {written >> 20} MiB", file=sys.stderr)
PY
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/src" -cf "$work/layer.tar" .
tar_bytes=$(stat -c %s "$work/layer.tar")
cat "$work/layer.tar" >/dev/null  # warm the page cache for both contenders

best() { sort -g | head -1; }
calc() { python3 -c "print($1)"; }
now() { date +%s.%N; }

charter_times=() peer_times=()
for i in 1 2 3; do
  rm -f "$work/c.img"; sync
  t0=$(now); root=$("$charter" layer build -q "$work/layer.tar" -o "$work/c.img"); t1=$(now)
  charter_times+=("$(calc "$t1 - $t0")")

  rm -rf "$work/x" "$work/p.img"; mkdir "$work/x"; sync
  t0=$(now)
  tar -C "$work/x" -xf "$work/layer.tar"
  mkfs.erofs --quiet -T0 -U 00000000-0000-0000-0000-000000000000 "$work/p.img" "$work/x" >/dev/null
  psize=$(stat -c %s "$work/p.img")
  veritysetup format "$work/p.img" "$work/p.img" --hash-offset="$psize" \
    --salt=0000000000000000000000000000000000000000000000000000000000000000 \
    --uuid=00000000-0000-0000-0000-000000000000 >/dev/null
  t1=$(now)
  peer_times+=("$(calc "$t1 - $t0")")
done
c=$(printf '%s\n' "${charter_times[@]}" | best)
p=$(printf '%s\n' "${peer_times[@]}" | best)
"$charter" layer verify -q "$work/c.img" --root-hash "$root" >/dev/null
fsck.erofs "$work/c.img" >/dev/null
printf '\nlayer tar: %d MiB, %s cores\n' $((tar_bytes >> 20)) "$(nproc)"
printf '%-44s %8s %10s\n' "contender" "best s" "MB/s"
printf '%-44s %8.2f %10.0f\n' "charter layer build" "$c" "$(calc "$tar_bytes / $c / 1000000")"
printf '%-44s %8.2f %10.0f\n' "tar -x + mkfs.erofs + veritysetup format" "$p" "$(calc "$tar_bytes / $p / 1000000")"
printf 'ratio charter/peer: %.2fx (goal: charter >= 600 MB/s)\n' "$(calc "$p / $c")"
