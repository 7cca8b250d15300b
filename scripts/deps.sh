# Sourced by the scripts in this folder: installs what charter's demo and tests need on a
# Debian machine of this project's kind. Safe to run again; does nothing when all is present.

charter_missing_debs() {
  local want=(
    veritysetup:cryptsetup-bin mkfs.erofs:erofs-utils fsck.erofs:erofs-utils
    busybox:busybox-static skopeo:skopeo umoci:umoci runc:runc
    docker-registry:docker-registry zstd:zstd openssl:openssl
    qemu-system-x86_64:qemu-system-x86
  )
  local missing=() pair
  for pair in "${want[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
  done
  # busybox must be the static build: tests copy it into images that have no libc.
  if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
    missing+=(busybox-static)
  fi
  # The qemu launcher's utility VM boots the Debian cloud kernel (and its modules).
  if ! compgen -G '/boot/vmlinuz-*-cloud-amd64' >/dev/null; then
    missing+=(linux-image-cloud-amd64)
  fi
  printf '%s\n' "${missing[@]}" | sort -u | grep -v '^$' || true
}

charter_install_deps() {
  local missing
  missing=$(charter_missing_debs)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "charter: missing Debian packages (install them as root): $missing" >&2
      return 1
    fi
    echo "charter: installing $missing" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # PyPI oracles: the launch-measurement reference implementation.
  if ! command -v sev-snp-measure >/dev/null 2>&1; then
    echo "charter: installing sev-snp-measure from PyPI" >&2
    python3 -m pip install -q --disable-pip-version-check sev-snp-measure >/dev/null
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  fi
  charter_install_opa_bridge || return 1
  if ! command -v cargo >/dev/null 2>&1; then
    echo "charter: cargo is not on PATH" >&2
    return 1
  fi
}

# Real OPA (v1.20.2, as a c-shared library in a PyPI wheel) for the policy engine's differential
# test. The wheel declares Python >= 3.14 but its ctypes bridge loads from any python3, so it is
# downloaded and unpacked rather than pip-installed. Exports CHARTER_OPA_BRIDGE.
charter_install_opa_bridge() {
  local dir=${CHARTER_OPA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/charter/opa-0.4.4}
  if [ ! -d "$dir/wheel" ]; then
    echo "charter: fetching the OPA bridge wheel from PyPI" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    python3 -m pip download -q --disable-pip-version-check --python-version 3.14 \
      --only-binary=:all: --no-deps opa-golib-python-bindings==0.4.4 -d "$dir.tmp/dl" >/dev/null || return 1
    python3 -m zipfile -e "$dir.tmp"/dl/opa_golib_python_bindings-*.whl "$dir.tmp/wheel" || return 1
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  export CHARTER_OPA_BRIDGE="$dir/wheel"
}
