#!/usr/bin/env bash
# Soak: the release `vitals` with every collector at a short interval, many idle containers,
# container churn and event-stream clients for a long run; samples RSS, threads, descriptors
# and CPU over time and prints each one's slope (least squares), whole run and second half.
#
# Parameters (environment):
#   SOAK_MINUTES        run length in minutes, fractions allowed (default 60)
#   SOAK_CONTAINERS     idle containers started first (default 500)
#   SOAK_CHURN          containers created and removed per second during the run (default 4; 0: none)
#   SOAK_SSE_CLIENTS    clients of /admin/monitor/stream (default 100)
#   SOAK_INTERVAL       every collector's interval (default 100ms)
#   SOAK_SAMPLE_SECONDS seconds between two samples (default 10)
#   SOAK_IDLE_WINDOW    seconds of the idle figure measured first with the idle containers: docker,
#                       process, network, cpu and memory at 1 s, no churn, no clients (default 60; 0: skip)
#   VITALS_BUILD_DIR    where `vitals` and the plugins are (default target/release)
#   SOAK_OUT            folder for the samples, the log and the config (default: a temp folder)
# Needs a Docker daemon and the test image of scripts/test-deps.d/20-docker.sh, and python3.
set -euo pipefail

MINUTES="${SOAK_MINUTES:-60}"
CONTAINERS="${SOAK_CONTAINERS:-500}"
CHURN="${SOAK_CHURN:-4}"
SSE_CLIENTS="${SOAK_SSE_CLIENTS:-100}"
INTERVAL="${SOAK_INTERVAL:-100ms}"
SAMPLE="${SOAK_SAMPLE_SECONDS:-10}"
IDLE_WINDOW="${SOAK_IDLE_WINDOW:-60}"
BUILD_DIR="$(cd "${VITALS_BUILD_DIR:-target/release}" && pwd)"
OUT="${SOAK_OUT:-$(mktemp -d /tmp/vitals-soak.XXXXXX)}"
IMAGE=vitals-test/busybox:latest
LABEL="vitals.soak=$$"
mkdir -p "$OUT"

die() { echo "soak: $*" >&2; exit 1; }
[ -x "$BUILD_DIR/vitals" ] || die "no $BUILD_DIR/vitals (make release)"
docker version --format "{{.Server.Version}}" >/dev/null 2>&1 || die "no Docker daemon answers (make test-deps)"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "the image $IMAGE is missing (make test-deps)"
command -v python3 >/dev/null || die "python3 is needed for the stream clients"

VITALS_PID=""
CHURN_PID=""
SSE_PID=""
cleanup() {
  for p in "$CHURN_PID" "$SSE_PID" "$VITALS_PID"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # Twice: a `docker run` of the churn loop may still be creating its container the first time.
  local ids round
  for round in 1 2; do
    ids="$(docker ps -aq --filter "label=$LABEL")"
    if [ -n "$ids" ]; then
      echo "soak: removing $(echo "$ids" | wc -l) containers"
      echo "$ids" | xargs -r -n 50 docker rm -f >/dev/null 2>&1 || true
    fi
    if [ "$round" = 1 ]; then sleep 5; fi
  done
}
trap cleanup EXIT INT TERM

echo "soak: $MINUTES min, $CONTAINERS idle containers, churn $CHURN/s, $SSE_CLIENTS stream clients, every collector at $INTERVAL; samples every $SAMPLE s in $OUT"

echo "soak: starting $CONTAINERS idle containers"
start="$(date +%s)"
seq 1 "$CONTAINERS" | xargs -r -P 8 -I{} docker run -d --label "$LABEL" --network none \
  --name "vitals-soak-$$-{}" "$IMAGE" sleep 1000000 >/dev/null
echo "soak: started in $(( $(date +%s) - start )) s"

ticks="$(getconf CLK_TCK)"
# CPU seconds of a process, with the children it has reaped (every collector here runs in it).
cpu_seconds() { awk -v t="$ticks" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / t }' "/proc/$1/stat"; }
# Waits for a host's log to name its address; prints it.
listening() {
  local log="$1" pid="$2" b=""
  for _ in $(seq 1 300); do
    b="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n 1 | sed 's/listening on //')" || true
    [ -n "$b" ] && break
    kill -0 "$pid" 2>/dev/null || die "vitals exited: $(tail -n 20 "$log")"
    sleep 0.1
  done
  [ -n "$b" ] || die "vitals did not listen within 30 s"
  echo "$b"
}
containers_listed() {
  curl -s "$1/admin/monitor/sections/docker" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["section"]["containers"]))' 2>/dev/null || echo '?'
}

# The idle figure first: the idle containers, docker, process, network, cpu and memory at 1 s,
# everything else as shipped (durable history on).
idle_result="not measured (SOAK_IDLE_WINDOW=0)"
if [ "$IDLE_WINDOW" -gt 0 ]; then
  idle_config="$OUT/idle.toml"
  for c in cpu memory network process docker; do
    printf '[collectors.%s]\ninterval = "1s"\n\n' "$c"
  done >"$idle_config"
  VITALS_HISTORY_PATH="$OUT/idle-history.db" NO_COLOR=1 "$BUILD_DIR/vitals" --config "$idle_config" --bind 127.0.0.1:0 --log info >"$OUT/idle.log" 2>&1 &
  VITALS_PID=$!
  idle_base="$(listening "$OUT/idle.log" "$VITALS_PID")"
  for _ in $(seq 1 60); do
    n="$(containers_listed "$idle_base")"
    [ "$n" != "?" ] && [ "$n" -ge "$CONTAINERS" ] && break
    sleep 1
  done
  sleep 20 # past the start-up work (first collects, the history file)
  before_listed="$(containers_listed "$idle_base")"
  echo "soak: idle figure, $IDLE_WINDOW s with $before_listed containers listed"
  c0="$(cpu_seconds "$VITALS_PID")"
  sleep "$IDLE_WINDOW"
  c1="$(cpu_seconds "$VITALS_PID")"
  after_listed="$(containers_listed "$idle_base")"
  rss_idle="$(awk '/^VmRSS:/ { print $2 }' "/proc/$VITALS_PID/status")"
  idle_result="$(awk -v a="$c0" -v b="$c1" -v w="$IDLE_WINDOW" 'BEGIN { printf "%.3f CPU-s/min", (b - a) / w * 60 }') over $IDLE_WINDOW s (containers listed $before_listed at the start, $after_listed at the end; RSS $rss_idle kB at the end)"
  echo "soak: idle figure: $idle_result"
  kill "$VITALS_PID" 2>/dev/null || true
  wait "$VITALS_PID" 2>/dev/null || true
  VITALS_PID=""
fi

# Every collector that ships, at the soak interval (the gpu one on the fake NVML when built).
config="$OUT/vitals.toml"
{
  printf '[history]\npoints = 600\n\n'
  for c in cpu memory system disk network process gpu docker; do
    printf '[collectors.%s]\ninterval = "%s"\n' "$c" "$INTERVAL"
    [ "$c" = docker ] && printf 'deadline = "8s"\n'
    if [ "$c" = gpu ] && [ -e "$BUILD_DIR/libnvidia_ml.so" ]; then
      printf '[collectors.gpu.config]\nnvml_library = "%s"\nnvidia_smi = "/nonexistent/nvidia-smi"\n' "$BUILD_DIR/libnvidia_ml.so"
    fi
    printf '\n'
  done
} >"$config"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
VITALS_HISTORY_PATH="$OUT/history.db" NO_COLOR=1 \
  "$BUILD_DIR/vitals" --config "$config" --bind 127.0.0.1:0 --log info >"$OUT/vitals.log" 2>&1 &
VITALS_PID=$!
base="$(listening "$OUT/vitals.log" "$VITALS_PID")"
echo "soak: vitals $VITALS_PID on $base"

# The stream clients: one process, one connection each, counting events until stopped.
python3 - "$base" "$SSE_CLIENTS" "$OUT/sse.txt" <<'PY' &
import asyncio, signal, sys
from urllib.parse import urlparse
url, n, out = urlparse(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
events = [0] * n
errors = []
async def client(i):
    try:
        r, w = await asyncio.open_connection(url.hostname, url.port, limit=64 << 20)
        w.write(f"GET /admin/monitor/stream HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await w.drain()
        while True:
            line = await r.readline()
            if not line:
                errors.append(f"client {i}: stream ended")
                return
            if line.startswith(b"data:"):
                events[i] += 1
    except Exception as e:
        errors.append(f"client {i}: {e}")
async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(client(i)) for i in range(n)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    with open(out, "w") as f:
        f.write(f"clients {n}, events min {min(events)} max {max(events)}, errors {len(errors)}\n")
        for e in errors[:5]:
            f.write(e + "\n")
asyncio.run(main())
PY
SSE_PID=$!

# Churn: every second, CHURN containers created and the CHURN oldest churn containers removed.
if [ "$CHURN" -gt 0 ]; then
  (
    i=0
    while true; do
      t0="$(date +%s%N)"
      for _ in $(seq 1 "$CHURN"); do
        i=$((i + 1))
        docker run -d --label "$LABEL" --label vitals.soak.churn=1 --network none \
          --name "vitals-soak-$$-churn-$i" "$IMAGE" sleep 1000000 >/dev/null 2>&1 &
      done
      wait
      if [ "$i" -gt $((CHURN * 3)) ]; then
        for j in $(seq $((i - CHURN * 4 + 1)) $((i - CHURN * 3))); do
          docker rm -f "vitals-soak-$$-churn-$j" >/dev/null 2>&1 &
        done
        wait
      fi
      took=$(( ($(date +%s%N) - t0) / 1000000 ))
      [ "$took" -lt 1000 ] && sleep "0.$(printf '%03d' $((1000 - took)))"
    done
  ) &
  CHURN_PID=$!
fi

samples="$OUT/samples.tsv"
printf 'seconds\trss_kb\tthreads\tfds\tcpu_seconds\n' >"$samples"
t_start="$(date +%s)"
end=$((t_start + $(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')))
while [ "$(date +%s)" -lt "$end" ]; do
  kill -0 "$VITALS_PID" 2>/dev/null || die "vitals exited during the run: $(tail -n 20 "$OUT/vitals.log")"
  now=$(( $(date +%s) - t_start ))
  rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$VITALS_PID/status")"
  threads="$(awk '/^Threads:/ { print $2 }' "/proc/$VITALS_PID/status")"
  fds="$(ls "/proc/$VITALS_PID/fd" | wc -l)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$now" "$rss" "$threads" "$fds" "$(cpu_seconds "$VITALS_PID")" | tee -a "$samples"
  sleep "$SAMPLE"
done

listed="$(containers_listed "$base")"
health="$(curl -s -o /dev/null -w '%{http_code}' "$base/admin/monitor/health")"
states="$(curl -s "$base/admin/monitor/system" | python3 -c 'import json,sys; c=json.load(sys.stdin)["collectors"]; print(" ".join(k + "=" + v["state"] for k, v in sorted(c.items())))' 2>/dev/null || echo '?')"
metrics="$(curl -s -o /dev/null -w '%{size_download} bytes in %{time_total} s' "$base/metrics")"
kill "$SSE_PID" 2>/dev/null || true
wait "$SSE_PID" 2>/dev/null || true
SSE_PID=""

echo
echo "soak result ($MINUTES min, $CONTAINERS idle containers + churn $CHURN/s, $SSE_CLIENTS stream clients, every collector at $INTERVAL):"
awk -F'\t' '
  NR == 1 { next }
  { n++; t[n] = $1; rss[n] = $2; th[n] = $3; fd[n] = $4; cpu[n] = $5 }
  function slope(a, from,   i, k, st, sv, stt, stv) {
    k = 0; st = 0; sv = 0; stt = 0; stv = 0
    for (i = from; i <= n; i++) { k++; st += t[i]; sv += a[i]; stt += t[i] * t[i]; stv += t[i] * a[i] }
    if (k < 2 || k * stt - st * st == 0) return "n/a"
    return sprintf("%+.1f", (k * stv - st * sv) / (k * stt - st * st) * 3600)
  }
  function range(a,   i, lo, hi) {
    lo = a[1]; hi = lo
    for (i = 1; i <= n; i++) { if (a[i] + 0 < lo + 0) lo = a[i]; if (a[i] + 0 > hi + 0) hi = a[i] }
    return lo ".." hi
  }
  function line(what, unit, a, half) {
    printf "  %-12s first %s, last %s, range %s; slope %s %s/h (whole run), %s %s/h (second half)\n", what, a[1], a[n], range(a), slope(a, 1), unit, slope(a, half), unit
  }
  END {
    if (n < 2) { print "  fewer than two samples"; exit }
    half = int(n / 2) + 1
    printf "  samples:     %d over %d s\n", n, t[n] - t[1]
    line("RSS (kB):", "kB", rss, half)
    line("threads:", "", th, half)
    line("descriptors:", "", fd, half)
    printf "  CPU:         %.2f CPU-s/min over the run (first half %.2f, second half %.2f)\n", (cpu[n] - cpu[1]) / (t[n] - t[1]) * 60, (cpu[half] - cpu[1]) / (t[half] - t[1]) * 60, (cpu[n] - cpu[half]) / (t[n] - t[half]) * 60
  }' "$samples"
echo "  idle figure first ($CONTAINERS idle containers; docker, process, network, cpu, memory at 1 s): $idle_result"
echo "  stream clients: $(head -n 1 "$OUT/sse.txt" 2>/dev/null || echo 'no report')"
echo "  at the end: health $health; containers listed $listed; $states"
echo "  /metrics: $metrics"
echo "  samples: $samples; log: $OUT/vitals.log"
