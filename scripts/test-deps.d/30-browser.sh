# The dashboard's browser tests: Debian's chromium, driven by playwright-core from npm.
# playwright's own browser download cannot run here, so the tests launch /usr/bin/chromium.
need chromium chromium
# Glyphs for the page's text in the screenshots (a slim image may have no fonts at all).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
need node nodejs
need npm npm
# npm ci when node_modules is missing or was installed from another lock file: the hash of
# the lock it came from is kept beside it.
lock_hash="$(sha256sum web/package-lock.json | cut -d' ' -f1)"
if [ "$(cat web/node_modules/.lock-sha256 2>/dev/null)" != "$lock_hash" ]; then
  echo "test-deps: npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" > web/node_modules/.lock-sha256
fi
