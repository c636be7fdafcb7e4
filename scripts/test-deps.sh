#!/usr/bin/env bash
# Installs (on Debian, when missing) and starts what the test suite needs.
# Each part lives in scripts/test-deps.d/*.sh and is sourced in order; every part only acts
# on what is missing, so running this again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_UPDATED=""

# apt_install PKG...: installs the Debian packages given, updating the lists once.
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  echo "test-deps: installing $*"
  $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null
}

# need CMD PKG: installs PKG when CMD is not on PATH.
need() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

for part in scripts/test-deps.d/*.sh; do
  # shellcheck source=/dev/null
  . "$part"
done
echo "test-deps: ready"
