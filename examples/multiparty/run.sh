#!/usr/bin/env bash
# Multiparty computation without trusting the operator or each other, on one machine:
#
#   1. a key broker (charter broker serve; trusts the INSECURE simulated SEV-SNP here);
#   2. the workload's execution policy, naming that broker (charter policy generate);
#   3. owner A and owner B each seal a dataset under their own key (charter data seal), upload
#      the key with a release policy pinned to the policy's digest (HOST_DATA);
#   4. the pod runs: after attestation the agent fetches both keys and opens both datasets on
#      guest-private tmpfs; the workload prints only an aggregate, and fetches a result key
#      itself through the workload key-release endpoint (ACI SKR API on 127.0.0.1:8080);
#   5. swapped sealed files do not open; the same pod with one env rule changed gets neither
#      key.
#
# Exits 0 only when the aggregate is right and the modified pod was refused. Needs root (the
# sandbox UVM). CHARTER_BIN=/path/to/charter skips the release build (the agent must sit next
# to it). CHARTER_UVM_IMAGE=DIR (a `charter uvm build --insecure-simulated-tee` output) runs the
# pods in the QEMU UVM instead: sealed files become read-only disks, the broker is reached over
# virtio-serial ports, TLS still ends in the guest.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "the multiparty example needs root (namespaces, loop devices, mounts, runc)" >&2
  exit 1
fi
. scripts/deps.sh
charter_install_deps
if [ -z "${CHARTER_BIN:-}" ]; then
  cargo build --release --locked -q -p charter -p charter-agent
  CHARTER_BIN="$PWD/target/release/charter"
fi
charter() { "$CHARTER_BIN" "$@"; }
uvm=()
if [ -n "${CHARTER_UVM_IMAGE:-}" ]; then
  uvm=(--uvm qemu --uvm-image "$CHARTER_UVM_IMAGE")
fi
here=examples/multiparty
work=$(mktemp -d "${TMPDIR:-/tmp}/charter-multiparty.XXXXXX")
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export CHARTER_INSECURE_SIM_DIR="$work/sim" CHARTER_CACHE_DIR="$work/cache"
say() { printf '\n== %s\n' "$*" >&2; }

say "workload image: busybox + join.sh (OCI layout)"
python3 "$here/image.py" "$work/image"
image=(--image "multiparty:1=oci:$work/image:1" --offline)

say "key broker on loopback (HTTPS, KBS protocol 0.4.0, INSECURE simulated SNP accepted)"
charter broker keygen --out-dir "$work/admin"
charter attest insecure-simulate --state "$work/sim" --out "$work/probe.json" \
  --root-out "$work/sim-root.pem" 2>/dev/null
mkdir "$work/broker"
"$CHARTER_BIN" broker serve --db "$work/broker/broker.db" --admin-public-key "$work/admin/admin.pub" \
  --listen 127.0.0.1:0 --addr-file "$work/broker/addr" \
  --insecure-allow-simulated --insecure-simulated-root "$work/sim-root.pem" \
  >"$work/broker/log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/broker/addr" ] && break; sleep 0.1; done
url="https://$(cat "$work/broker/addr")"
ca="$work/broker/tls-ca.pem"
admin=(--url "$url" --ca "$ca" --admin-key "$work/admin/admin.key")
echo "broker at $url" >&2

say "the execution policy (it names the broker and its CA, and so attests them)"
charter policy generate "$here/pod.yaml" "${image[@]}" -q \
  --key-broker "$url" --key-broker-ca "$ca" --workload-endpoint -o "$work/policy.rego"
host_data=$(sha256sum "$work/policy.rego" | cut -d' ' -f1)
echo "policy sha256 (HOST_DATA) $host_data" >&2

for owner in a b; do
  say "owner $owner seals its dataset and releases the key only to HOST_DATA $host_data"
  charter data seal "$here/owner-$owner" -o "$work/owner-$owner.sealed" \
    --key-file "$work/owner-$owner.key"
  charter broker resource set "${admin[@]}" "owner-$owner/dataset/key" "$work/owner-$owner.key"
  charter broker policy new --host-data "$host_data" -o "$work/release-$owner.rego"
  charter broker policy set "${admin[@]}" --resource "owner-$owner/dataset/key" \
    "$work/release-$owner.rego"
done
say "the operator adds a result key the workload fetches itself (workload endpoint)"
head -c 32 /dev/urandom > "$work/result.key"
charter broker resource set "${admin[@]}" shared/result/key "$work/result.key"
charter broker policy set "${admin[@]}" --resource shared/result/key "$work/release-a.rego"
# (markers long enough not to occur by chance in ciphertext)
if grep -qF -e "patients.csv" -e "p01,34" -e "treatments.csv" -e "p02,1200" \
  "$work/owner-a.sealed" "$work/owner-b.sealed"; then
  echo "FAIL: plaintext visible in a sealed file" >&2
  exit 1
fi

sealed=(--sealed "owner-a=$work/owner-a.sealed" --sealed "owner-b=$work/owner-b.sealed")
say "the pod runs: the agent attests, fetches both keys, opens both datasets in the guest"
charter run "${uvm[@]}" "$here/pod.yaml" --policy "$work/policy.rego" "${image[@]}" "${sealed[@]}" \
  --name multiparty | tee "$work/out.txt"
for expected in "aggregate: matched=4 total_cost=4900 mean_age=40.8" \
  "key-release endpoint: {\"message\":\"Status OK\"}" \
  "result key released to the workload as a JWK"; do
  if ! grep -qF "$expected" "$work/out.txt"; then
    echo "FAIL: expected '$expected'" >&2
    exit 1
  fi
done

say "a host that swaps the two sealed files: each opens only with its own owner's key"
if charter run "${uvm[@]}" "$here/pod.yaml" --policy "$work/policy.rego" "${image[@]}" \
  --sealed "owner-a=$work/owner-b.sealed" --sealed "owner-b=$work/owner-a.sealed" \
  --name multiparty-swapped >"$work/swapped.txt" 2>&1; then
  cat "$work/swapped.txt" >&2
  echo "FAIL: the pod ran on swapped sealed files" >&2
  exit 1
fi
cat "$work/swapped.txt" >&2
grep -q "does not open with its key" "$work/swapped.txt"

say "the same pod with one env rule changed (MODE=dump-rows) asks for the same keys"
charter policy generate "$here/pod-modified.yaml" "${image[@]}" -q \
  --key-broker "$url" --key-broker-ca "$ca" --workload-endpoint -o "$work/policy-modified.rego"
if charter run "${uvm[@]}" "$here/pod-modified.yaml" --policy "$work/policy-modified.rego" "${image[@]}" \
  "${sealed[@]}" --name multiparty-modified >"$work/modified.txt" 2>&1; then
  cat "$work/modified.txt" >&2
  echo "FAIL: the modified pod ran" >&2
  exit 1
fi
cat "$work/modified.txt" >&2
if ! grep -q "owner-a/dataset/key" "$work/modified.txt" || grep -qF "p01,34" "$work/modified.txt"; then
  echo "FAIL: the modified pod was not refused the key" >&2
  exit 1
fi
say "OK: aggregate computed from both sealed datasets; the modified pod got neither key"
