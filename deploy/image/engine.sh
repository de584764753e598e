#!/usr/bin/env bash
# Container engine for `bentoml containerize --backend podman` on a Debian 12 host without a
# Docker daemon: Debian's podman 4.3 with runc, netavark + iptables for the bridge network,
# catatonit, mmdebstrap for the local base image (deploy/image/base.sh). As root it apt-installs
# what is missing (one `apt-get update`, skipped when all is there); it always writes
# $IMAGE_DIR/containers.conf (point CONTAINERS_CONF at it) and checks that podman storage works.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE_DIR=${IMAGE_DIR:-$ROOT/.image}
PACKAGES=(podman buildah runc iptables catatonit netavark aardvark-dns mmdebstrap uidmap fuse-overlayfs)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "engine.sh: missing Debian packages: ${missing[*]}" >&2
        echo "  as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "engine.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman's default nofile ulimit (1048576) exceeds the hard limit here and the process lacks
# CAP_SYS_RESOURCE ("setrlimit RLIMIT_NOFILE: operation not permitted"): cap it at `ulimit -Hn`.
hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
nofile=$(( hard_nofile < 20000 ? hard_nofile : 20000 ))
hard_nproc=$(ulimit -Hu)
[ "$hard_nproc" = unlimited ] && hard_nproc=4096
nproc=$(( hard_nproc < 4096 ? hard_nproc : 4096 ))

mkdir -p "$IMAGE_DIR"
conf="$IMAGE_DIR/containers.conf"
cat > "$conf.tmp" <<CONF
# written by deploy/image/engine.sh; use with CONTAINERS_CONF=$conf
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# crun refuses the hybrid cgroup layout of these machines
runtime = "runc"

[network]
# netavark (with iptables), not the stale CNI config Debian leaves in /etc/cni/net.d
network_backend = "netavark"
CONF
mv "$conf.tmp" "$conf"

# Storage: overlay where the kernel allows it, else vfs (slow, but works everywhere).
export CONTAINERS_CONF=$conf
driver=$(podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || true)
if [ -z "$driver" ]; then
    echo "engine.sh: 'podman info' fails; try: CONTAINERS_CONF=$conf podman --log-level=debug info" >&2
    exit 1
fi
# an empty working container, mounted: proves the storage driver can mount layers here
probe=$(buildah from scratch 2>"$IMAGE_DIR/engine-probe.log") \
    && buildah mount "$probe" >/dev/null 2>>"$IMAGE_DIR/engine-probe.log" \
    && buildah rm "$probe" >/dev/null 2>>"$IMAGE_DIR/engine-probe.log" || {
    echo "engine.sh: podman storage ($driver) cannot mount a layer (see $IMAGE_DIR/engine-probe.log);" \
         "vfs works everywhere: STORAGE_DRIVER=vfs, or driver = \"vfs\" in /etc/containers/storage.conf" >&2
    exit 1
}
echo "engine.sh: podman $(podman version --format '{{.Client.Version}}'), runtime runc, storage $driver, ulimits nofile=$nofile nproc=$nproc"
echo "engine.sh: export CONTAINERS_CONF=$conf"
