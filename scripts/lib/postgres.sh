# shellcheck shell=bash
# Sourced by the scripts: make sure a PostgreSQL server is reachable.
#
# ensure_local_postgres starts (and on first use creates) a PostgreSQL server whose data persists in
# the project's data/postgres folder, listening on 127.0.0.1:$IDMINTER_LOCAL_PG_PORT (default 54329),
# and sets PG_ADMIN_URL to it. It installs PostgreSQL with apt-get when it is missing and we are root
# on Debian or Ubuntu; otherwise it says how to install it.

IDMINTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_DATA="$IDMINTER_ROOT/data/postgres"
PG_PORT="${IDMINTER_LOCAL_PG_PORT:-54329}"

log() { echo "[idminter] $*" >&2; }

# True when something answers PostgreSQL's protocol at host $1, port $2.
pg_reachable() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 2
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin /usr/local/pgsql/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install_postgres() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL is not installed: installing it with apt-get (postgresql, postgresql-client)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >&2
  else
    log "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install PostgreSQL 14 or newer:"
    log "  Debian/Ubuntu: sudo apt-get install postgresql   macOS: brew install postgresql@16"
    log "or point DATABASE_URL at a server you have."
    return 1
  fi
}

# Runs a server binary as the postgres user when we are root (initdb refuses to run as root).
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ensure_local_postgres() {
  local bindir
  bindir=$(pg_bindir) || true
  if [ -z "$bindir" ]; then
    install_postgres || return 1
    bindir=$(pg_bindir) || { log "PostgreSQL was installed but initdb is still not found"; return 1; }
  fi
  mkdir -p "$PG_DATA"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "creating a local PostgreSQL in $PG_DATA"
    as_pg_user "$bindir/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 >/dev/null
  fi
  if ! pg_reachable 127.0.0.1 "$PG_PORT"; then
    log "starting the local PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_DATA/server.log)"
    as_pg_user "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  fi
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

# Creates database $2 on the server at admin URL $1 unless it exists.
ensure_database() {
  local admin=$1 name=$2 psql
  psql=$(command -v psql || echo "$(pg_bindir)/psql")
  if [ ! -x "$psql" ]; then
    log "psql not found: cannot create database $name (install postgresql-client)"
    return 1
  fi
  if [ "$("$psql" "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    "$psql" "$admin" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}
