#!/usr/bin/env bash
# Installs the peer monitors (Debian: collectd-core, prometheus-node-exporter, netdata; PyPI:
# glances[web,containers] in a virtualenv under build/), starts each on a loopback port at a
# 1 s interval, measures them beside vitals with `vitals-bench peers`, and stops them again.
#
# Usage: scripts/bench-peers.sh [--quick] [--window SECS]   (after `cargo build --release ...`)
# Needs root (or sudo) for apt. Only the processes this script starts are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="$PWD"
WORK="$ROOT/build/bench-peers"
BENCH="${VITALS_BENCH:-$ROOT/target/release/vitals-bench}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Loopback ports, away from the peers' defaults so a system-wide instance does not collide.
PORT_COLLECTD=19103
PORT_NODE=19100
PORT_NETDATA=19999
PORT_GLANCES=19208

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  echo "bench-peers: installing $*"
  # Packages must not start system services here (the bench starts its own instances):
  # a temporary policy-rc.d says so, unless the machine already has one.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ -n "$policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  return 0
}

[ -x /usr/sbin/collectd ] || apt_install collectd-core
# collectd-core leaves its plugins' libraries to Recommends; write_prometheus needs these.
if ldd /usr/lib/collectd/write_prometheus.so | grep -q 'not found'; then
  apt_install libmicrohttpd12 libprotobuf-c1
fi
[ -x /usr/bin/prometheus-node-exporter ] || apt_install prometheus-node-exporter
[ -x /usr/sbin/netdata ] || apt_install netdata
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3 python3-venv

mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/glances" ]; then
  echo "bench-peers: installing glances[web,containers] into $WORK/venv"
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q 'glances[web,containers]'
fi

if [ ! -x "$BENCH" ]; then
  echo "bench-peers: $BENCH is missing; run \`make bench\` (or cargo build --release -p vitals-bench ...) first" >&2
  exit 1
fi

for port in $PORT_COLLECTD $PORT_NODE $PORT_NETDATA $PORT_GLANCES; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench-peers: 127.0.0.1:$port is already in use; stop what listens there first" >&2
    exit 1
  fi
done

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    # Each peer runs in its own session: end the whole group it made (netdata's plugins too).
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  sleep 2
  for pid in "${PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

# start NAME CMD...: starts CMD in a new session, logging to $WORK/NAME.log.
start() {
  local name="$1"
  shift
  setsid "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  echo "bench-peers: started $name (pid $!)"
}

# wait_http NAME URL: waits (at most 60 s) until URL answers.
wait_http() {
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "bench-peers: $1 did not answer $2 within 60 s; its log:" >&2
  tail -n 20 "$WORK/$1.log" >&2 || true
  return 1
}
command -v curl >/dev/null || apt_install curl

# collectd: eight read plugins at 1 s, exported in the Prometheus format.
cat >"$WORK/collectd.conf" <<EOF
Interval 1
FQDNLookup false
BaseDir "$WORK/collectd"
PIDFile "$WORK/collectd.pid"
PluginDir "/usr/lib/collectd"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin interface
LoadPlugin df
LoadPlugin disk
LoadPlugin processes
LoadPlugin swap
LoadPlugin write_prometheus
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "$PORT_COLLECTD"
</Plugin>
EOF
mkdir -p "$WORK/collectd"
start collectd /usr/sbin/collectd -f -C "$WORK/collectd.conf"

# node_exporter collects on every scrape.
start node_exporter /usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:$PORT_NODE"

# netdata: every chart at 1 s, the web server on loopback only, files under build/.
mkdir -p "$WORK/netdata/cache" "$WORK/netdata/lib" "$WORK/netdata/log"
cat >"$WORK/netdata.conf" <<EOF
[global]
  update every = 1
  run as user = $(id -un)
[directories]
  cache = $WORK/netdata/cache
  lib = $WORK/netdata/lib
  log = $WORK/netdata/log
[web]
  bind to = 127.0.0.1:$PORT_NETDATA
[registry]
  enabled = no
[cloud]
  enabled = no
[ml]
  enabled = no
EOF
start netdata /usr/sbin/netdata -D -c "$WORK/netdata.conf"

# Glances: the web API only, refreshing every second.
start glances "$WORK/venv/bin/glances" -w --disable-webui --bind 127.0.0.1 --port "$PORT_GLANCES" -t 1 --quiet

wait_http collectd "http://127.0.0.1:$PORT_COLLECTD/metrics"
wait_http node_exporter "http://127.0.0.1:$PORT_NODE/metrics"
wait_http netdata "http://127.0.0.1:$PORT_NETDATA/api/v1/allmetrics?format=json"
wait_http glances "http://127.0.0.1:$PORT_GLANCES/api/4/all"
# Let every peer go through a few collection cycles before the window starts.
sleep 5

"$BENCH" peers "$@" \
  --peer "collectd,${PIDS[0]},http://127.0.0.1:$PORT_COLLECTD/metrics" \
  --peer "node_exporter,${PIDS[1]},http://127.0.0.1:$PORT_NODE/metrics" \
  --peer "netdata,${PIDS[2]},http://127.0.0.1:$PORT_NETDATA/api/v1/allmetrics?format=json" \
  --peer "glances,${PIDS[3]},http://127.0.0.1:$PORT_GLANCES/api/4/all"
