# shellcheck shell=bash
# The console's browser tests (tests/it/console.rs) drive Debian's headless
# Chromium through chromedriver (WebDriver). This installs the two Debian
# packages when either binary is missing (never a downloaded browser build:
# that cannot work here, and a distribution package gets security updates),
# starts one chromedriver on a free port and exports its URL. Sourced by
# scripts/test, which calls ensure_browser then start_webdriver.
#
#   PAYD_WEBDRIVER   the WebDriver URL the tests talk to (exported here)

ensure_browser() {
  if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    return 0
  fi
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    payd_err "chromium and chromedriver are missing; install the Debian packages chromium and chromium-driver"
    return 1
  fi
  payd_log "installing chromium and chromium-driver (Debian packages)"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || return 1
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]
}

# A TCP port nothing listens on now.
browser_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts chromedriver in the background (stopped when the calling shell
# exits) and waits until it answers; exports PAYD_WEBDRIVER.
start_webdriver() {
  local port log
  port=$(browser_free_port) || return 1
  log="${TMPDIR:-/tmp}/payd-chromedriver-$port.log"
  /usr/bin/chromedriver --port="$port" >"$log" 2>&1 &
  PAYD_CHROMEDRIVER_PID=$!
  # Only the process started here is stopped, by its id.
  trap 'kill "$PAYD_CHROMEDRIVER_PID" 2>/dev/null || true' EXIT
  local i
  for i in $(seq 1 50); do
    if payd_port_open 127.0.0.1 "$port"; then
      export PAYD_WEBDRIVER="http://127.0.0.1:$port"
      payd_log "chromedriver answers at $PAYD_WEBDRIVER (log: $log)"
      return 0
    fi
    sleep 0.2
  done
  payd_err "chromedriver did not start (see $log)"
  return 1
}
