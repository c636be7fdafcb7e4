#!/bin/sh
# A vitals exec collector in POSIX shell: load average, runnable tasks and uptime from /proc.
# Ignores its config table (stdin) and prints one JSON object: the section.
set -eu
read -r one five fifteen tasks _last </proc/loadavg || { echo "cannot read /proc/loadavg" >&2; exit 1; }
read -r uptime _idle </proc/uptime
running=${tasks%/*}
total=${tasks#*/}
printf '{"load_1m":%s,"load_5m":%s,"load_15m":%s,"tasks_running":%s,"tasks_total":%s,"uptime_seconds":%s}\n' \
  "$one" "$five" "$fifteen" "$running" "$total" "$uptime"
