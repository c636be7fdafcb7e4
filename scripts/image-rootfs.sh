#!/usr/bin/env bash
# Lays out the container image's file system from a finished cargo build: `vitals`, the
# plugins, the default config, the `vitals` user (uid 10001), and exactly the shared libraries
# the binary and the plugins load (as ldd lists them) with the dynamic loader. Nothing else:
# no shell, no package manager.
#   usage: image-rootfs.sh BUILD_DIR ROOTFS
set -euo pipefail
cd "$(dirname "$0")/.."
build="$1"
rootfs="$2"
plugins=(cpu memory system gpu disk network process docker)

rm -rf "$rootfs"
mkdir -p "$rootfs"/{usr/bin,usr/lib/vitals/plugins,etc/vitals,tmp,host}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$build/vitals" "$rootfs/usr/bin/vitals"
for p in "${plugins[@]}"; do
  install -m 0644 "$build/libvitals_plugin_$p.so" "$rootfs/usr/lib/vitals/plugins/"
done
# Debug builds carry their debug information; the image has no use for it.
if command -v strip >/dev/null; then
  strip --strip-debug "$rootfs/usr/bin/vitals" "$rootfs"/usr/lib/vitals/plugins/*.so
fi
install -m 0644 config/vitals.toml "$rootfs/etc/vitals/vitals.toml"

# Every library ldd names (absolute paths, the loader included), copied to the same path.
libs=$(ldd "$rootfs/usr/bin/vitals" "$rootfs"/usr/lib/vitals/plugins/*.so \
  | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' | sort -u)
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
vitals:x:10001:10001:vitals system monitor:/var/lib/vitals:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
vitals:x:10001:
GROUP
echo "$rootfs: $(find "$rootfs" -type f | wc -l) files; libraries: $(echo $libs)"
