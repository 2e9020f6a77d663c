#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer before the service or the tests start.
#
#   scripts/services.sh test   the machine's servers on 127.0.0.1:5432 and :6379; started with the
#                              system's own commands when they are down.
#   scripts/services.sh run    DATABASE_URL / REDIS_URL (environment, then .env, then defaults)
#                              when they answer; otherwise private servers under .data/, whose
#                              URLs are written to .env. Also writes a generated signing secret
#                              to .env when none is set.
set -euo pipefail
mode=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.data"
envfile="$root/.env"
PRIVATE_PG_PORT=${PRIVATE_PG_PORT:-54329}
PRIVATE_REDIS_PORT=${PRIVATE_REDIS_PORT:-63799}

say() { printf 'services: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

envget() {
  local name=$1 value="${!1:-}"
  if [ -z "$value" ] && [ -f "$envfile" ]; then
    value=$(grep -E "^${name}=" "$envfile" | tail -n 1 | cut -d= -f2- || true)
  fi
  printf '%s' "$value"
}

envset() {
  touch "$envfile"
  grep -vE "^$1=" "$envfile" > "$envfile.tmp" || true
  printf '%s=%s\n' "$1" "$2" >> "$envfile.tmp"
  mv "$envfile.tmp" "$envfile"
}

pg_bin() {
  local found
  for found in /usr/lib/postgresql/*/bin; do
    if [ -x "$found/$1" ]; then printf '%s/%s' "$found" "$1"; return 0; fi
  done
  if have "$1"; then command -v "$1"; return 0; fi
  return 1
}

install_missing() {
  local packages=()
  pg_bin initdb >/dev/null || packages+=(postgresql)
  have redis-server || packages+=(redis-server)
  have pg_isready || packages+=(postgresql-client)
  [ ${#packages[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && have apt-get; then
    say "installing ${packages[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    say "missing ${packages[*]}; install them with: sudo apt-get install -y ${packages[*]}"
    exit 1
  fi
}

pg_up() { pg_isready -q -t 3 -d "$1" 2>/dev/null; }
redis_up() { have redis-cli && [ "$(redis-cli -u "$1" ping 2>/dev/null)" = PONG ]; }

wait_for() {
  local what=$1 check=$2 url=$3
  for _ in $(seq 1 60); do
    if $check "$url"; then return 0; fi
    sleep 0.5
  done
  say "$what did not come up at $url"
  exit 1
}

start_private_pg() {
  local dir="$data/pg" initdb pg_ctl runas=()
  initdb=$(pg_bin initdb) && pg_ctl=$(pg_bin pg_ctl) || { say "initdb/pg_ctl not found"; exit 1; }
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then
    # initdb and postgres refuse to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runas=(runuser -u postgres --)
    mkdir -p "$dir" && chown postgres "$dir" && chmod 700 "$dir"
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    say "initialising a private PostgreSQL in $dir"
    "${runas[@]}" "$initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  say "starting the private PostgreSQL on 127.0.0.1:$PRIVATE_PG_PORT"
  "${runas[@]}" "$pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $PRIVATE_PG_PORT -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
}

start_private_redis() {
  mkdir -p "$data/redis"
  say "starting a private Redis on 127.0.0.1:$PRIVATE_REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PRIVATE_REDIS_PORT" --save "" \
    --appendonly no --dir "$data/redis" --logfile "$data/redis/server.log" \
    --pidfile "$data/redis/redis.pid" >/dev/null
}

case "$mode" in
test)
  install_missing
  pg_url=${TEST_DATABASE_URL:-postgresql://127.0.0.1:5432/postgres}
  redis_url=${TEST_REDIS_URL:-redis://127.0.0.1:6379}
  if ! pg_up "$pg_url"; then
    say "PostgreSQL is down; starting the machine's cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    wait_for PostgreSQL pg_up "$pg_url"
  fi
  if ! redis_up "$redis_url"; then
    say "Redis is down; starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for Redis redis_up "$redis_url"
  fi
  ;;
run)
  install_missing
  db_url=$(envget DATABASE_URL); db_url=${db_url:-postgresql://127.0.0.1:5432/stripe_ingest}
  redis_url=$(envget REDIS_URL); redis_url=${redis_url:-redis://127.0.0.1:6379/0}
  if pg_up "$db_url"; then
    say "PostgreSQL answers at $db_url"
  elif [ -n "${DATABASE_URL:-}" ]; then
    say "DATABASE_URL is set in the environment but does not answer: $db_url"
    exit 1
  else
    start_private_pg
    db_url="postgresql://postgres@127.0.0.1:$PRIVATE_PG_PORT/stripe_ingest"
    wait_for PostgreSQL pg_up "$db_url"
    envset DATABASE_URL "$db_url"
  fi
  if redis_up "$redis_url"; then
    say "Redis answers at $redis_url"
  elif [ -n "${REDIS_URL:-}" ]; then
    say "REDIS_URL is set in the environment but does not answer: $redis_url"
    exit 1
  else
    start_private_redis
    redis_url="redis://127.0.0.1:$PRIVATE_REDIS_PORT/0"
    wait_for Redis redis_up "$redis_url"
    envset REDIS_URL "$redis_url"
  fi
  if [ -z "$(envget STRIPE_WEBHOOK_SECRET)" ]; then
    envset STRIPE_WEBHOOK_SECRET "whsec_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    say "wrote a generated STRIPE_WEBHOOK_SECRET to .env"
  fi
  ;;
stop)
  if [ -f "$data/pg/PG_VERSION" ]; then
    runas=(); [ "$(id -u)" = 0 ] && runas=(runuser -u postgres --)
    "${runas[@]}" "$(pg_bin pg_ctl)" -D "$data/pg" stop -m fast || true
  fi
  [ -f "$data/redis/redis.pid" ] && kill "$(cat "$data/redis/redis.pid")" 2>/dev/null || true
  ;;
*)
  echo "usage: scripts/services.sh test|run|stop" >&2
  exit 2
  ;;
esac
