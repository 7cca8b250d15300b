#!/usr/bin/env bash
# Runs charter's whole test suite. Installs the Debian packages the tests use as oracles
# (veritysetup, erofs-utils, skopeo, ...) when run as root.
#
# Tests that need root (loop mounts, namespaces) are marked #[ignore = "needs root: ..."]: as
# root they run; otherwise cargo reports them as ignored, never as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
charter_install_deps

if [ "$(id -u)" = 0 ]; then
  cargo test --workspace --locked -- --include-ignored
else
  echo "charter: not root; tests that need root are reported as ignored" >&2
  cargo test --workspace --locked
fi
