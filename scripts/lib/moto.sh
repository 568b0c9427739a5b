# shellcheck shell=bash
# Sourced by scripts/test after venv.sh: an SQS- and SNS-compatible server (moto's server mode) on
# 127.0.0.1 for the queue adapter's tests.
#
# start_moto installs moto into the project's virtualenv (data/venv) on first use, starts it on a
# free port, waits until it answers, exports IDMINTER_TEST_SQS_ENDPOINT, and stops it when the
# calling script exits. Its log is data/moto.log.

MOTO_PACKAGE='moto[server]==5.2.1'

start_moto() {
  local server python port
  server=$(venv_tool moto_server "$MOTO_PACKAGE")
  python="$IDMINTER_VENV/bin/python"
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$server" -H 127.0.0.1 -p "$port" >"$IDMINTER_VENV/../moto.log" 2>&1 &
  MOTO_PID=$!
  trap stop_moto EXIT
  local tries=0
  until "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ] || ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "[idminter] moto did not start; its log:" >&2
      cat "$IDMINTER_VENV/../moto.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export IDMINTER_TEST_SQS_ENDPOINT="http://127.0.0.1:$port"
  echo "[idminter] moto (SQS, SNS) at $IDMINTER_TEST_SQS_ENDPOINT" >&2
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
