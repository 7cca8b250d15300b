#!/usr/bin/env bash
# charter's main job on the embedded defaults: `charter demo` builds a demo image from
# busybox-static, generates its execution policy, runs the pod in the sandbox UVM (the agent in
# fresh namespaces, layers verified against the policy, runc, INSECURE simulated SEV-SNP),
# verifies the attestation (HOST_DATA = policy digest) and shows tampering refused; then the
# multiparty example (examples/multiparty/run.sh) releases two owners' keys to the group.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "charter demo needs root (namespaces, loop devices, mounts, runc): run it as root" >&2
  exit 1
fi
. scripts/deps.sh
charter_install_deps
cargo build --release --locked -q -p charter -p charter-agent
"$PWD/target/release/charter" demo "$@"
# Then the key broker part: two data owners' sealed datasets joined in an attested group,
# and a pod whose policy differs by one env rule refused both keys.
CHARTER_BIN="$PWD/target/release/charter" bash examples/multiparty/run.sh
