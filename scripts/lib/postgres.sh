# shellcheck shell=bash
# Sourced by the scripts: make sure a PostgreSQL server is reachable.
#
# ensure_local_postgres starts (and on first use creates) a PostgreSQL server whose data persists in
# the project's data/postgres folder, listening on 127.0.0.1, and sets PG_PORT and PG_ADMIN_URL to
# it. It installs PostgreSQL with apt-get when it is missing and we are root on Debian or Ubuntu;
# otherwise it says how to install it.
#
# Three things a first run must survive:
# - root in a folder only root may enter (a clone under /root): the server runs as the `postgres`
#   user, who cannot reach ./data/postgres there. The cluster then lives in
#   /var/lib/idminter/<folder name>-<hash of the checkout's path>/postgres, and ./data/postgres is a
#   symbolic link to it, so it is still found (and persists) where the README says.
# - another checkout's server on the port we would use: we never adopt it. The port is the one in our
#   own cluster's postmaster.pid when it runs, else $IDMINTER_LOCAL_PG_PORT, else the first free port
#   from 54329 up.
# - a server that did not start: we stop with its log, rather than go on as if it had.

IDMINTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_DATA="$IDMINTER_ROOT/data/postgres"
PG_PORT="${IDMINTER_LOCAL_PG_PORT:-54329}"

log() { echo "[idminter] $*" >&2; }

# True when something answers PostgreSQL's protocol at host $1, port $2.
pg_reachable() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 2 -U postgres -d postgres
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

# Runs a server binary as the postgres user when we are root (initdb refuses to run as root), from
# `/`, since the postgres user may not be allowed into the current folder.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Points PG_DATA at a folder the server's user can reach (see the top of this file).
choose_data_dir() {
  local link="$IDMINTER_ROOT/data/postgres" elsewhere
  if [ -L "$link" ]; then
    PG_DATA=$(readlink -f "$link")
    return
  fi
  PG_DATA=$link
  mkdir -p "$PG_DATA"
  [ "$(id -u)" = 0 ] || return 0
  chown postgres "$PG_DATA"
  chmod 700 "$PG_DATA"
  if as_pg_user test -r "$PG_DATA" -a -w "$PG_DATA" -a -x "$PG_DATA"; then
    return
  fi
  elsewhere="/var/lib/idminter/$(basename "$IDMINTER_ROOT")-$(printf %s "$IDMINTER_ROOT" | cksum | cut -d' ' -f1)/postgres"
  log "the postgres user cannot reach $PG_DATA (a parent folder is closed to it):"
  log "keeping the local cluster in $elsewhere, linked from $link"
  rmdir "$PG_DATA"
  mkdir -p "$elsewhere"
  chown postgres "$elsewhere"
  chmod 700 "$elsewhere"
  ln -s "$elsewhere" "$link"
  PG_DATA=$elsewhere
}

# Sets PG_PORT: where our own cluster listens when it runs, else a port nobody answers on.
choose_port() {
  local pid_port
  if [ -f "$PG_DATA/postmaster.pid" ] && as_pg_user "$1/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    pid_port=$(sed -n 4p "$PG_DATA/postmaster.pid")
    if [ -n "$pid_port" ]; then
      PG_PORT=$pid_port
      return
    fi
  fi
  if [ -n "${IDMINTER_LOCAL_PG_PORT:-}" ]; then
    if pg_reachable 127.0.0.1 "$PG_PORT"; then
      log "port $PG_PORT (IDMINTER_LOCAL_PG_PORT) is taken by a PostgreSQL that is not this checkout's ($PG_DATA)"
      return 1
    fi
    return
  fi
  PG_PORT=54329
  while pg_reachable 127.0.0.1 "$PG_PORT" || (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; do
    PG_PORT=$((PG_PORT + 1))
    if [ "$PG_PORT" -gt 54428 ]; then
      log "no free port between 54329 and 54428 for the local PostgreSQL"
      return 1
    fi
  done
}

# --- memory settings sized to the machine (issue 12) ---
# size_local_postgres DATA BINDIR writes PostgreSQL's memory and WAL settings for this machine into
# the cluster's postgresql.auto.conf (ALTER SYSTEM's file): directly while the server is stopped,
# through ALTER SYSTEM and a reload while it runs (shared_buffers then waits for the next restart,
# which it says). Run on every start, so an existing cluster gets them too and a resized machine
# is followed. The memory is the smaller of RAM and the cgroup's limit, or IDMINTER_LOCAL_PG_MEMORY_MB;
# IDMINTER_LOCAL_PG_TUNE=0 leaves the settings alone. Sizing (docs/SCALING.md): shared_buffers 25%,
# effective_cache_size 75%, maintenance_work_mem 5% (64 MB to 2 GB), work_mem RAM / 800 (4 to 64
# MB; 200 connections, a few sorts each), max_wal_size 4 GB, SSD costs.
size_local_postgres() {
  local data=$1 bindir=$2 mb limit key value kv settings=() conf psql pending
  [ "${IDMINTER_LOCAL_PG_TUNE:-1}" != 0 ] || return 0
  mb=${IDMINTER_LOCAL_PG_MEMORY_MB:-}
  if [ -z "$mb" ]; then
    if [ -r /proc/meminfo ]; then
      mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
    elif command -v sysctl >/dev/null 2>&1; then
      mb=$(( $(sysctl -n hw.memsize) / 1048576 ))
    fi
    limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo max)
    if [[ "$limit" =~ ^[0-9]+$ ]] && [ $((limit / 1048576)) -lt "${mb:-0}" ]; then
      mb=$((limit / 1048576))
    fi
  fi
  if ! [[ "${mb:-}" =~ ^[0-9]+$ ]] || [ "$mb" -lt 256 ]; then
    log "could not tell this machine's memory: leaving PostgreSQL's memory settings alone"
    return 0
  fi
  clamp() { local v=$1; [ "$v" -lt "$2" ] && v=$2; [ "$v" -gt "$3" ] && v=$3; echo "$v"; }
  settings=(
    "shared_buffers=$((mb / 4))MB"
    "effective_cache_size=$((mb * 3 / 4))MB"
    "maintenance_work_mem=$(clamp $((mb / 20)) 64 2048)MB"
    "work_mem=$(clamp $((mb / 800)) 4 64)MB"
    "max_wal_size=4GB"
    "min_wal_size=1GB"
    "wal_buffers=16MB"
    "checkpoint_completion_target=0.9"
    "random_page_cost=1.1"
    "effective_io_concurrency=200"
  )
  conf="$data/postgresql.auto.conf"
  if as_pg_user "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    psql=$(command -v psql || echo "$bindir/psql")
    for kv in "${settings[@]}"; do
      key=${kv%%=*}; value=${kv#*=}
      "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qXc "ALTER SYSTEM SET $key = '$value'" >/dev/null || return 1
    done
    "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qXtAc "SELECT pg_reload_conf()" >/dev/null
    pending=$("$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qXtAc \
      "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart AND name = 'shared_buffers'")
    [ -z "$pending" ] || log "PostgreSQL settings sized to ${mb} MB; $pending apply at its next restart (pg_ctl -D $data restart)"
  else
    # What ALTER SYSTEM would write: our keys replaced, every other line kept.
    local keys tmp
    keys=$(printf '%s\n' "${settings[@]}" | cut -d= -f1 | paste -sd'|')
    tmp=$(as_pg_user grep -Ev "^[[:space:]]*($keys)[[:space:]]*=" "$conf" 2>/dev/null || true)
    {
      [ -n "$tmp" ] && printf '%s\n' "$tmp"
      for kv in "${settings[@]}"; do printf "%s = '%s'\n" "${kv%%=*}" "${kv#*=}"; done
    } | as_pg_user tee "$conf" >/dev/null
    log "PostgreSQL settings sized to ${mb} MB of memory (shared_buffers $((mb / 4)) MB): $conf"
  fi
}
# --- end memory settings ---

ensure_local_postgres() {
  local bindir
  bindir=$(pg_bindir) || true
  if [ -z "$bindir" ]; then
    install_postgres || return 1
    bindir=$(pg_bindir) || { log "PostgreSQL was installed but initdb is still not found"; return 1; }
  fi
  choose_data_dir
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "creating a local PostgreSQL in $PG_DATA"
    if ! as_pg_user "$bindir/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 >/dev/null; then
      log "initdb failed in $PG_DATA"
      return 1
    fi
  fi
  choose_port "$bindir" || return 1
  size_local_postgres "$PG_DATA" "$bindir" || log "could not size PostgreSQL's memory settings (see above)"
  if ! as_pg_user "$bindir/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "starting the local PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_DATA/server.log)"
    if ! as_pg_user "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null; then
      log "the local PostgreSQL did not start; the end of its log ($PG_DATA/server.log):"
      tail -n 20 "$PG_DATA/server.log" >&2 || true
      return 1
    fi
  fi
  if ! pg_reachable 127.0.0.1 "$PG_PORT"; then
    log "the local PostgreSQL in $PG_DATA runs but does not answer on 127.0.0.1:$PG_PORT"
    return 1
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
