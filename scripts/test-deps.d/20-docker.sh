# Docker: Debian's daemon, started in the background when none answers, and a local test
# image imported from busybox-static (no registry needed).
need dockerd docker.io
need docker docker.io
# The chaos tests run a second daemon pair of their own (containerd and dockerd).
need containerd containerd
[ -x /bin/busybox ] || apt_install busybox-static

docker_answers() { docker info >/dev/null 2>&1; }

if ! docker_answers; then
  echo "test-deps: starting dockerd (log: /var/log/dockerd.log)"
  # No systemd in CI. Extra flags (e.g. `--iptables=false --bridge=none`) come from
  # VITALS_DOCKERD_FLAGS when the machine's kernel lacks what the defaults need.
  # shellcheck disable=SC2086
  $SUDO sh -c "dockerd ${VITALS_DOCKERD_FLAGS:-} >/var/log/dockerd.log 2>&1 &"
  for _ in $(seq 1 60); do
    docker_answers && break
    sleep 1
  done
  if ! docker_answers; then
    echo "test-deps: dockerd did not answer within 60 s; its log:" >&2
    tail -n 30 /var/log/dockerd.log >&2 || true
    return 1
  fi
fi

VITALS_TEST_IMAGE=vitals-test/busybox:latest
if ! docker image inspect "$VITALS_TEST_IMAGE" >/dev/null 2>&1; then
  echo "test-deps: importing $VITALS_TEST_IMAGE from busybox-static"
  rootfs="$(mktemp -d)"
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$VITALS_TEST_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
