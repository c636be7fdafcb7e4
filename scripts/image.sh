#!/usr/bin/env bash
# Builds the container image from a finished cargo build, with no registry pulls: the file
# system laid out by image-rootfs.sh, then deploy/docker/prebuilt.Dockerfile (FROM scratch).
#   VITALS_BUILD_DIR  folder with `vitals` and the plugin libraries (default target/release)
#   VITALS_IMAGE      the image name (default vitals:<version>, also tagged vitals:latest)
set -euo pipefail
cd "$(dirname "$0")/.."

build="$(realpath "${VITALS_BUILD_DIR:-target/release}")"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' host/Cargo.toml | head -n 1)"
image="${VITALS_IMAGE:-vitals:$version}"
[ -x "$build/vitals" ] || { echo "image: no $build/vitals: build first (make release)" >&2; exit 1; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
bash scripts/image-rootfs.sh "$build" "$context/rootfs"
mkdir -p "$context/state"
cp deploy/docker/prebuilt.Dockerfile "$context/Dockerfile"
tags=(-t "$image")
[ -n "${VITALS_IMAGE:-}" ] || tags+=(-t vitals:latest)
DOCKER_BUILDKIT=0 docker build -q "${tags[@]}" "$context" >/dev/null
echo "$image"
