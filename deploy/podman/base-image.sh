#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim when no container registry is reachable:
# a Debian bookworm rootfs made with debootstrap (from the Debian mirror apt already uses)
# with Debian's python3.11, imported into podman as $TB_BASE_IMAGE.
#   deploy/podman/base-image.sh            (needs root, debootstrap and podman)
# Reused when the image already exists; TB_REBUILD_BASE=1 rebuilds it.
set -euo pipefail

BASE_IMAGE=${TB_BASE_IMAGE:-localhost/tb-debian-python:3.11-bookworm}
MIRROR=${TB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ROOTFS=${TB_ROOTFS_DIR:-/var/tmp/tb-debian-rootfs}

if podman image exists "$BASE_IMAGE" && [ "${TB_REBUILD_BASE:-0}" != 1 ]; then
  echo "base image $BASE_IMAGE exists (TB_REBUILD_BASE=1 rebuilds it)"
  exit 0
fi

rm -rf "$ROOTFS"
CACHE=${TB_DEBOOTSTRAP_CACHE:-/var/tmp/tb-debootstrap-cache}
mkdir -p "$CACHE"
# minbase: essential + apt only (debootstrap's own dependency resolution misses some of
# python3.11-venv's dependencies, so Python comes from apt inside the rootfs below).
debootstrap --variant=minbase --cache-dir="$CACHE" --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR"
# python3.11-venv brings ensurepip (the Dockerfile makes a venv); ca-certificates lets pip
# and apt use https inside the build.
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
chroot "$ROOTFS" apt-get install -y --no-install-recommends python3.11 python3.11-venv
chroot "$ROOTFS" apt-get clean
: > "$ROOTFS/etc/resolv.conf"

# What python:3.11-slim offers that the Dockerfile relies on: a `python` on PATH.
ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$ROOTFS/usr/local/bin/python3"
# Same sources as the host's apt (deb.debian.org, bookworm + updates + security).
cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
# Keep the image small, as the slim images do.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*

tar -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$BASE_IMAGE"
rm -rf "$ROOTFS"
echo "imported $BASE_IMAGE"
