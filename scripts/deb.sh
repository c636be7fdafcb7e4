#!/usr/bin/env bash
# Builds the Debian package from a finished cargo build with debhelper (debian/rules), in a
# scratch copy of the files it ships, so the checkout stays clean and runs do not collide.
#   VITALS_BUILD_DIR    folder with `vitals` and the plugin libraries (default target/release)
#   VITALS_DEB_VERSION  package version (default: the host crate's version)
#   VITALS_DEB_DIR      where vitals_<version>_amd64.deb is written (default target/debian)
#   VITALS_DEB_COMPRESS dpkg-deb's compressor (default xz; gzip is faster)
set -euo pipefail
cd "$(dirname "$0")/.."

build="$(realpath "${VITALS_BUILD_DIR:-target/release}")"
out="$(realpath -m "${VITALS_DEB_DIR:-target/debian}")"
version="${VITALS_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' host/Cargo.toml | head -n 1)}"
[ -x "$build/vitals" ] || { echo "deb: no $build/vitals: build first (make release)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/deploy" "$out"
cp -r debian config docs README.md CHANGELOG.md "$work/"
cp -r deploy/systemd "$work/deploy/"
(cd "$work" && VITALS_BUILD_DIR="$build" VITALS_DEB_DIR="$out" VITALS_DEB_VERSION="$version" \
  debian/rules binary)
echo "$out/vitals_${version}_amd64.deb"
