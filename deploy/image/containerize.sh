#!/usr/bin/env bash
# One OCI image from one Bento with BentoML's own `bentoml containerize`, podman as the
# builder (no Docker daemon):  deploy/image/containerize.sh BENTO_TAG IMAGE_TAG cpu|cuda
# The CPU build bind-mounts the local CPU torch wheel(s) read-only at /opt/wheels, where the
# CPU base image's uv looks (deploy/image/base.sh): no machine path in the bentofile, no wheel
# copied into the image, and no CUDA wheel ever downloaded. `make image`, `make image-cuda`
# and tests/e2e/test_image.py call this; BENTOML_HOME says which store holds the Bento.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENTOML=${BENTOML:-$ROOT/.venv/bin/bentoml}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/.image/containers.conf}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
[ $# -eq 3 ] || { echo "usage: $0 BENTO_TAG IMAGE_TAG cpu|cuda" >&2; exit 2; }
bento=$1 image=$2 variant=$3

options=()
case "$variant" in
    cpu) options+=(--opt "volume=$(cd "$TORCH_WHEELS" && pwd):/opt/wheels:ro") ;;
    cuda) ;;
    *) echo "containerize.sh: variant is cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
start=$(date +%s)
"$BENTOML" containerize "$bento" --backend podman --image-tag "$image" "${options[@]}"
echo "containerize.sh: $image ($variant) built in $(( $(date +%s) - start )) s"
podman image ls "$image"
