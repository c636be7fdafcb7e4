# The API test runs schemathesis (PyPI, pinned) against the OpenAPI description, from a
# virtualenv of its own under build/.
SCHEMATHESIS_VERSION=4.32.5
if ! build/venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  echo "test-deps: installing schemathesis $SCHEMATHESIS_VERSION into build/venv"
  python3 -m venv build/venv
  build/venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
