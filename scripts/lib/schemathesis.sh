# shellcheck shell=bash
# Hostile-input check: schemathesis (from PyPI, pinned, in a venv under
# target/) generates requests from payd's own /openapi.json and checks that no
# answer is a 5xx and every answer matches the documented status codes,
# content types and schemas. Sourced by scripts/test.
#
#   PAYD_SKIP_SCHEMATHESIS=1      skip it
#   PAYD_SCHEMATHESIS_EXAMPLES=N  examples per operation (default 20)
#   PAYD_SCHEMATHESIS_SEED=N      generation seed (default 1: the same cases every run)

SCHEMATHESIS_VERSION=4.32.5

ensure_schemathesis() {
  local venv=target/schemathesis-venv
  if [[ -x "$venv/bin/schemathesis" ]] && "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  payd_log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >/dev/null 2>&1 || return 1
}

run_schemathesis() {
  local bin=target/debug/payd
  [[ -x "$bin" ]] || cargo build --quiet --bin payd || return 1
  if ! ensure_schemathesis; then
    payd_log "SKIPPED schemathesis: could not install it from PyPI (python3 -m venv / pip failed)"
    return 0
  fi
  local port db prefix pid status=0
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  db="payd_test_schemathesis_$$"
  prefix="payd_test_schemathesis_$$."
  local server="${PAYD_TEST_DATABASE_URL%/}"
  PAYD_ENV=development PAYD_LOG_FORMAT=text RUST_LOG=error PAYD_HTTP__LISTEN="127.0.0.1:$port" \
    PAYD_RATE_LIMIT__PER_MINUTE=0 PAYD_DATABASE__URL="$server/$db" PAYD_AMQP__URL="$PAYD_TEST_AMQP_URL" \
    PAYD_AMQP__PREFIX="$prefix" "$bin" serve >target/schemathesis-payd.log 2>&1 &
  pid=$!
  local ready=0
  for _ in $(seq 1 120); do
    if curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.5
  done
  if (( ready )); then
    payd_log "running schemathesis against http://127.0.0.1:$port/openapi.json"
    # From target/, so its cache directory (.schemathesis) lands there.
    (cd target && schemathesis-venv/bin/schemathesis run "http://127.0.0.1:$port/openapi.json" \
      -H "Authorization: Bearer sk_test_1234567890abcdefghijklmnop" \
      --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
      --max-examples "${PAYD_SCHEMATHESIS_EXAMPLES:-20}" --seed "${PAYD_SCHEMATHESIS_SEED:-1}" \
      --generation-database none --no-color) || status=$?
  else
    payd_log "payd did not become ready for schemathesis; see target/schemathesis-payd.log"
    status=1
  fi
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  psql "$server/postgres" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  return "$status"
}
