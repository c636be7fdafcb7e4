#!/usr/bin/env bash
# Installs (on Debian, when missing) and starts what the test suite needs.
# Safe to run again: it only acts on what is missing.
set -euo pipefail

need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }

# The end-to-end tests compare against /proc and iproute2's view of the machine.
want ip iproute2

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test-deps: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
echo "test-deps: ready"
