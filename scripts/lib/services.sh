# shellcheck shell=bash
#
# Shared set-up helpers for scripts/run and scripts/test. Source this file;
# it defines functions only and changes no shell options.
#
#   ensure_rust      cargo must be on PATH (picks up ~/.cargo/bin if needed)
#   ensure_services  PostgreSQL and RabbitMQ must answer on TCP; if they do
#                    not, start them with docker compose, or else (as root on
#                    Debian/Ubuntu) start or install the system packages.
#
# Settings (environment):
#   PAYD_PG_HOST / PAYD_PG_PORT      default 127.0.0.1 / 5432
#   PAYD_AMQP_HOST / PAYD_AMQP_PORT  default 127.0.0.1 / 5672
#   PAYD_PG_WAIT / PAYD_AMQP_WAIT    seconds to wait after starting (30 / 60)
#
# The project connects with postgres://postgres:postgres@127.0.0.1:5432/...
# and amqp://guest:guest@127.0.0.1:5672/%2f.
#
# All output goes to stderr, prefixed with "[payd]".

PAYD_REPO_ROOT="${PAYD_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

payd_log() {
  printf '[payd] %s\n' "$*" >&2
}

payd_err() {
  printf '[payd] error: %s\n' "$*" >&2
}

# payd_port_open HOST PORT -> 0 if a TCP connection succeeds within 2 s.
payd_port_open() {
  local host=$1 port=$2
  # The inner script's $1/$2 are expanded by the child bash, not here.
  # shellcheck disable=SC2016
  if command -v timeout >/dev/null 2>&1; then
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" >/dev/null 2>&1
  else
    bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" >/dev/null 2>&1
  fi
}

# payd_is_local HOST -> 0 if HOST is this machine (we may start servers there).
payd_is_local() {
  case "$1" in
    127.*|localhost|::1|0.0.0.0) return 0 ;;
    *) return 1 ;;
  esac
}

# payd_wait_for NAME HOST PORT SECONDS -> polls once a second, bounded.
payd_wait_for() {
  local name=$1 host=$2 port=$3 limit=$4 waited=0
  while ! payd_port_open "$host" "$port"; do
    if (( waited >= limit )); then
      payd_err "$name did not answer on $host:$port within ${limit}s"
      return 1
    fi
    if (( waited % 5 == 0 )); then
      payd_log "waiting for $name on $host:$port (${waited}s/${limit}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  payd_log "$name is up on $host:$port"
}

# Postgres may accept TCP a moment before it accepts queries ("the database
# system is starting up"); use pg_isready when it is installed.
payd_wait_for_postgres() {
  local host=$1 port=$2 limit=$3 waited=0
  payd_wait_for PostgreSQL "$host" "$port" "$limit" || return 1
  command -v pg_isready >/dev/null 2>&1 || return 0
  until pg_isready -q -h "$host" -p "$port" -t 2; do
    if (( waited >= limit )); then
      payd_err "PostgreSQL on $host:$port accepts connections but is not ready after ${limit}s"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    payd_err "cargo was not found on PATH."
    payd_err "Install Rust with rustup (https://rustup.rs), e.g.:"
    payd_err "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    payd_err "then open a new shell (or run: . \"\$HOME/.cargo/env\") and try again."
    return 1
  fi
}

# ---- docker ---------------------------------------------------------------

payd_docker_available() {
  command -v docker >/dev/null 2>&1 || return 1
  if command -v timeout >/dev/null 2>&1; then
    timeout 20 docker info >/dev/null 2>&1
  else
    docker info >/dev/null 2>&1
  fi
}

# Prints the compose command to use ("docker compose" or "docker-compose").
payd_compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose"
  else
    return 1
  fi
}

# payd_start_with_docker SERVICE... (compose service names)
payd_start_with_docker() {
  local compose
  if ! compose=$(payd_compose_cmd); then
    payd_err "Docker is running but neither 'docker compose' nor 'docker-compose' is installed."
    return 1
  fi
  payd_log "starting $* with $compose (docker-compose.yml in $PAYD_REPO_ROOT)"
  # $compose is intentionally split into words.
  # shellcheck disable=SC2086
  (cd "$PAYD_REPO_ROOT" && $compose up -d "$@") >&2 || {
    payd_err "'$compose up -d $*' failed (is something else using the ports?)"
    return 1
  }
}

# ---- Debian / Ubuntu packages ----------------------------------------------

payd_apt_updated=0
payd_apt_install() {
  if (( payd_apt_updated == 0 )); then
    payd_log "apt-get update"
    apt-get update >&2 || return 1
    payd_apt_updated=1
  fi
  payd_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

payd_pg_clusters_exist() {
  local d
  for d in /etc/postgresql/*/main; do
    [[ -d "$d" ]] && return 0
  done
  return 1
}

payd_start_local_postgres() {
  local fresh=0 dir ver
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! payd_pg_clusters_exist; then
    payd_log "PostgreSQL is not installed; installing it"
    payd_apt_install postgresql || { payd_err "could not install postgresql"; return 1; }
    fresh=1
  fi
  if ! payd_pg_clusters_exist; then
    payd_err "no PostgreSQL cluster found under /etc/postgresql/*/main (create one with pg_createcluster)"
    return 1
  fi
  for dir in /etc/postgresql/*/main; do
    ver=$(basename "$(dirname "$dir")")
    payd_log "starting PostgreSQL cluster $ver/main"
    # Fails harmlessly if the cluster is already running.
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 ||
      payd_log "pg_ctlcluster $ver main start returned non-zero (it may already be running)"
  done
  payd_wait_for_postgres "$PAYD_PG_HOST" "$PAYD_PG_PORT" "${PAYD_PG_WAIT:-30}" || return 1
  if (( fresh )); then
    # Debian authenticates TCP connections with scram-sha-256, not trust:
    # give the postgres role the password the project's URLs use.
    payd_log "setting the password of the 'postgres' role to 'postgres' (fresh install)"
    (cd / && su postgres -c "psql -q -v ON_ERROR_STOP=1 -p $PAYD_PG_PORT -c \"ALTER ROLE postgres PASSWORD 'postgres'\"") >&2 || {
      payd_err "could not set the password of the postgres role"
      return 1
    }
  fi
}

payd_start_local_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    payd_log "RabbitMQ is not installed; installing it"
    payd_apt_install rabbitmq-server || { payd_err "could not install rabbitmq-server"; return 1; }
    # The package's post-install may already have started it.
    if payd_port_open "$PAYD_AMQP_HOST" "$PAYD_AMQP_PORT"; then
      return 0
    fi
  fi
  payd_log "starting RabbitMQ (rabbitmq-server -detached)"
  (cd / && rabbitmq-server -detached) >&2 ||
    payd_log "rabbitmq-server -detached returned non-zero (it may already be running)"
}

# ---- entry point -------------------------------------------------------------

ensure_services() {
  PAYD_PG_HOST="${PAYD_PG_HOST:-127.0.0.1}"
  PAYD_PG_PORT="${PAYD_PG_PORT:-5432}"
  PAYD_AMQP_HOST="${PAYD_AMQP_HOST:-127.0.0.1}"
  PAYD_AMQP_PORT="${PAYD_AMQP_PORT:-5672}"
  local pg_wait="${PAYD_PG_WAIT:-30}" amqp_wait="${PAYD_AMQP_WAIT:-60}"
  local pg_up=0 mq_up=0

  payd_port_open "$PAYD_PG_HOST" "$PAYD_PG_PORT" && pg_up=1
  payd_port_open "$PAYD_AMQP_HOST" "$PAYD_AMQP_PORT" && mq_up=1

  # (a) Both answer: reuse them.
  if (( pg_up && mq_up )); then
    payd_log "using PostgreSQL at $PAYD_PG_HOST:$PAYD_PG_PORT and RabbitMQ at $PAYD_AMQP_HOST:$PAYD_AMQP_PORT"
    return 0
  fi

  local missing=() what=()
  (( pg_up )) || { missing+=(postgres); what+=("PostgreSQL ($PAYD_PG_HOST:$PAYD_PG_PORT)"); }
  (( mq_up )) || { missing+=(rabbitmq); what+=("RabbitMQ ($PAYD_AMQP_HOST:$PAYD_AMQP_PORT)"); }
  payd_log "not answering: ${what[*]}"

  local host
  for host in "$PAYD_PG_HOST" "$PAYD_AMQP_HOST"; do
    if ! payd_is_local "$host"; then
      payd_err "$host is not this machine, so it cannot be started from here."
      payd_err "Start ${what[*]} yourself, or unset PAYD_PG_HOST / PAYD_AMQP_HOST to use local servers."
      return 1
    fi
  done

  # (b) Docker engine available: docker compose (only the missing services,
  #     so a server already running on the host keeps its port).
  if payd_docker_available; then
    payd_start_with_docker "${missing[@]}" || return 1
    # Published ports accept TCP before the server inside is ready, so also
    # wait for each container's health check (see docker-compose.yml).
    if (( ! pg_up )); then
      payd_wait_for PostgreSQL "$PAYD_PG_HOST" "$PAYD_PG_PORT" "$((pg_wait * 2))" || return 1
      payd_wait_for_docker_healthy postgres "$((pg_wait * 2))" || return 1
    fi
    if (( ! mq_up )); then
      payd_wait_for RabbitMQ "$PAYD_AMQP_HOST" "$PAYD_AMQP_PORT" "$((amqp_wait * 2))" || return 1
      payd_wait_for_docker_healthy rabbitmq "$((amqp_wait * 2))" || return 1
    fi
    return 0
  fi

  # (c) Root on Debian/Ubuntu: start (installing if needed) the system servers.
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    payd_log "no Docker engine; using the system packages"
    if (( ! pg_up )); then
      payd_start_local_postgres || return 1
    fi
    if (( ! mq_up )); then
      payd_start_local_rabbitmq || return 1
      payd_wait_for RabbitMQ "$PAYD_AMQP_HOST" "$PAYD_AMQP_PORT" "$amqp_wait" || return 1
    fi
    return 0
  fi

  # (d) Nothing we can do.
  payd_err "cannot start ${what[*]}: no Docker engine, and not root with apt-get."
  payd_err "Start them yourself, then run this again. For example:"
  payd_err "  docker compose up -d postgres rabbitmq        (with a Docker engine), or"
  payd_err "  sudo pg_ctlcluster <version> main start; sudo rabbitmq-server -detached"
  payd_err "Expected: postgres://postgres:postgres@$PAYD_PG_HOST:$PAYD_PG_PORT and amqp://guest:guest@$PAYD_AMQP_HOST:$PAYD_AMQP_PORT/%2f"
  return 1
}

# payd_wait_for_docker_healthy SERVICE SECONDS -> waits for the compose
# service's container health check to pass (no-op if it has none).
payd_wait_for_docker_healthy() {
  local svc=$1 limit=$2 waited=0 compose id status
  compose=$(payd_compose_cmd) || return 0
  # shellcheck disable=SC2086
  id=$(cd "$PAYD_REPO_ROOT" && $compose ps -q "$svc" 2>/dev/null) || return 0
  [[ -n "$id" ]] || return 0
  while :; do
    status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null) || return 0
    case "$status" in
      healthy|none) return 0 ;;
    esac
    if (( waited >= limit )); then
      payd_err "the $svc container is not healthy after ${limit}s (status: $status)"
      return 1
    fi
    if (( waited % 5 == 0 )); then
      payd_log "waiting for the $svc container to become healthy (${waited}s/${limit}s)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}
