#!/usr/bin/env bash
# Local base images for `bentoml containerize` (no container registry is reachable here):
#   localhost/credit-risk-base:bookworm-py311      Debian 12 (python3 3.11), host CA bundle,
#                                                  uv on PATH; the CUDA image builds FROM it
#   localhost/credit-risk-base:bookworm-py311-cpu  + uv pinned to the local CPU torch wheel:
#                                                  UV_FIND_LINKS=/opt/wheels (bind-mounted by
#                                                  `make image`, not baked in) and a constraint
#                                                  torch==<ver>+cpu, so a build without the
#                                                  wheel fails instead of pulling CUDA torch.
# Each is skipped when it exists (FORCE=1 rebuilds all three, e.g. after a new torch wheel).
# Needs root and deploy/image/engine.sh (make engine).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE_DIR=${IMAGE_DIR:-$ROOT/.image}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$IMAGE_DIR/containers.conf}
BASE=${BASE_IMAGE:-localhost/credit-risk-base:bookworm-py311}
CPU_BASE=${CPU_BASE_IMAGE:-$BASE-cpu}
ROOTFS_IMAGE=localhost/credit-risk-rootfs:bookworm
UV_VERSION=${UV_VERSION:-0.13.9}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BENTO_UID=1034
BENTO_DIRS="/home/bentoml/bentos /home/bentoml/models /home/bentoml/envs /home/bentoml/tmp /home/bentoml/prometheus_multiproc_dir"
BENTO_VOLUMES=$(printf '"%s", ' $BENTO_DIRS); BENTO_VOLUMES=${BENTO_VOLUMES%, }
# python3 3.11 for uv's venv; the rest is what BentoML's generated Dockerfile apt-installs
# anyway (its default_install_command for distro debian), so that step finds them in place.
PACKAGES=python3,python3-venv,ca-certificates,gnupg2,bash,build-essential,git

[ -f "$CONTAINERS_CONF" ] || { echo "base.sh: $CONTAINERS_CONF missing: run deploy/image/engine.sh (make engine)" >&2; exit 1; }
exists() { podman image exists "$1"; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

if [ -n "${FORCE:-}" ] || ! exists "$BASE"; then
    if [ -n "${FORCE:-}" ] || ! exists "$ROOTFS_IMAGE"; then
        echo "base.sh: mmdebstrap bookworm ($PACKAGES)"
        mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
            --aptopt='Apt::Install-Recommends "false"' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            bookworm "$ctx/rootfs.tar" "$MIRROR"
        podman import --quiet --change 'CMD ["/bin/bash"]' "$ctx/rootfs.tar" "$ROOTFS_IMAGE" >/dev/null
        rm -f "$ctx/rootfs.tar"
    fi
    cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
    cat > "$ctx/Containerfile" <<CF
FROM $ROOTFS_IMAGE
# the host's bundle: the registries are reached through a TLS-inspecting proxy
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    UV_PYTHON_DOWNLOADS=never \\
    UV_NO_CACHE=1 \\
    UV_LINK_MODE=copy
RUN python3 -m venv /opt/uv \\
 && /opt/uv/bin/pip install --no-cache-dir --quiet uv==$UV_VERSION \\
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv \\
 && uv --version \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# Read-only root filesystem: BentoML's generated Dockerfile fixes BENTOML_HOME=/home/bentoml/
# (an ENV that the bentofile's envs cannot override) and at start-up BentoML creates these
# folders there. Declared as volumes (owned by BentoML's default user, uid 1034, whom the
# Dockerfile adds later), podman/docker give each container writable copies of them even with
# --read-only; on Kubernetes mount emptyDirs at these paths.
RUN mkdir -p $BENTO_DIRS && chown -R $BENTO_UID:$BENTO_UID /home/bentoml
VOLUME [$BENTO_VOLUMES]
CF
    echo "base.sh: building $BASE"
    podman build --quiet --network host -t "$BASE" "$ctx" >/dev/null
fi

if [ -n "${FORCE:-}" ] || ! exists "$CPU_BASE"; then
    wheel=$(ls "$TORCH_WHEELS"/torch-*+cpu-cp311-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$wheel" ] || { echo "base.sh: no torch-*+cpu-cp311 wheel in $TORCH_WHEELS (TORCH_WHEELS=...)" >&2; exit 1; }
    torch_version=$(basename "$wheel" | cut -d- -f2)      # e.g. 2.13.0+cpu
    cat > "$ctx/Containerfile" <<CF
FROM $BASE
# uv finds the CPU wheel in /opt/wheels (bind-mounted into the build by \`make image\`); the
# constraint makes a build without it fail rather than resolve PyPI's CUDA torch (~5 GB).
RUN mkdir -p /opt/wheels /etc/uv && echo 'torch==$torch_version' > /etc/uv/cpu-constraints.txt
ENV UV_FIND_LINKS=/opt/wheels \\
    UV_CONSTRAINT=/etc/uv/cpu-constraints.txt
LABEL org.credit-risk.torch="$torch_version"
CF
    echo "base.sh: building $CPU_BASE (torch $torch_version from $TORCH_WHEELS at build time)"
    podman build --quiet -t "$CPU_BASE" "$ctx" >/dev/null
fi
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "credit-risk-(base|rootfs)" || true
