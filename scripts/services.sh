#!/usr/bin/env bash
# Makes PostgreSQL and Redis reachable for booking-cli and writes their URLs to
# target/services.env (for the other scripts to `source`). In order:
#   1. the servers at DATABASE_URL / REDIS_URL (or the defaults) if they already answer;
#   2. `docker compose up -d --wait` if a Docker engine answers;
#   3. private throwaway servers from locally installed PostgreSQL / redis-server binaries,
#      under target/services/ (data) on free ports;
#   4. otherwise it fails, saying what to install.
# `scripts/services.sh stop` stops the private servers of step 3.
# Chatter goes to stderr; the only output is target/services.env (mode 0600, shell-quoted
# values: it holds the URLs, passwords included, and is meant to be sourced).
# No password ever goes on a command line: pg_isready needs none, redis-cli gets REDISCLI_AUTH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ENV_FILE=target/services.env
PRIVATE=target/services
DEFAULT_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/booking
DEFAULT_REDIS_URL=redis://127.0.0.1:6379

say() { echo "services: $*" >&2; }
die() { say "error: $*"; exit 1; }

pg_answers() {
    local host port
    read -r host port < <(host_port "$1" 5432)
    if command -v pg_isready >/dev/null; then
        # Whether the server accepts connections needs no credentials.
        timeout 5 pg_isready -q -h "$host" -p "$port" >/dev/null 2>&1
    else
        tcp_open "$host" "$port"
    fi
}

redis_answers() {
    local host port password reply
    read -r host port < <(host_port "$1" 6379)
    password=$(url_password "$1")
    if ! command -v redis-cli >/dev/null; then
        tcp_open "$host" "$port"
        return
    fi
    if [ -n "$password" ]; then
        reply=$(REDISCLI_AUTH=$password timeout 5 redis-cli -h "$host" -p "$port" ping 2>/dev/null) || true
    else
        reply=$(timeout 5 redis-cli -h "$host" -p "$port" ping 2>/dev/null) || true
    fi
    [ "$reply" = PONG ]
}

write_env() {
    mkdir -p target
    # Private from the start: created under umask 077, and narrowed if it existed.
    (
        umask 077
        printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\n' "$1" "$2" >"$ENV_FILE"
    )
    chmod 600 "$ENV_FILE"
    say "PostgreSQL at $(mask "$1"), Redis at $(mask "$2") (written to $ENV_FILE)"
}

pg_bin() {
    if command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user, with its data in a
# directory that user owns.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_private_postgres() {
    local bin port data
    bin=$(pg_bin) || true
    [ -n "$bin" ] || return 1
    port=$(free_port 55432)
    data=$PWD/$PRIVATE/pg
    if [ "$(id -u)" = 0 ]; then
        # As root, the server runs as `postgres`, which needs a directory of its own: a fresh
        # one (mktemp), never a predictable path another user could have prepared.
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to start a private PostgreSQL"
        data=$(mktemp -d "${TMPDIR:-/tmp}/booking-cli-pg.XXXXXXXX")
        chown postgres "$data"
    fi
    mkdir -p "$data"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "initialising a private PostgreSQL in $data"
        as_pg_user "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    as_pg_user "$bin/pg_ctl" -D "$data" -o "-p $port -k $data -c listen_addresses=127.0.0.1" -l "$data/log" -w start >/dev/null
    echo "$data" >"$PRIVATE/pg.datadir"
    echo "$bin" >"$PRIVATE/pg.bin"
    echo "postgres://postgres@127.0.0.1:$port/booking"
}

start_private_redis() {
    command -v redis-server >/dev/null || return 1
    local port; port=$(free_port 56379)
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$PWD/$PRIVATE" --pidfile "$PWD/$PRIVATE/redis.pid" --logfile "$PWD/$PRIVATE/redis.log" >/dev/null
    for _ in $(seq 50); do redis_answers "redis://127.0.0.1:$port" && break; sleep 0.1; done
    echo "redis://127.0.0.1:$port"
}

stop_private() {
    if [ -f "$PRIVATE/pg.datadir" ]; then
        local data
        data=$(cat "$PRIVATE/pg.datadir")
        as_pg_user "$(cat "$PRIVATE/pg.bin")/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
        # A throwaway directory made by mktemp (as root) goes with its server.
        case $data in "$PWD"/*) ;; *) rm -rf "$data" ;; esac
        rm -f "$PRIVATE/pg.datadir" "$PRIVATE/pg.bin"
    fi
    if [ -f "$PRIVATE/redis.pid" ]; then
        kill "$(cat "$PRIVATE/redis.pid")" 2>/dev/null || true
        rm -f "$PRIVATE/redis.pid"
    fi
    rm -f "$ENV_FILE"
    say "private servers stopped"
}

if [ "${1:-}" = stop ]; then stop_private; exit 0; fi

database_url=${DATABASE_URL:-$DEFAULT_DATABASE_URL}
redis_url=${REDIS_URL:-$DEFAULT_REDIS_URL}

# 1. Already running (the URLs given, or the ones a previous run of this script wrote).
if pg_answers "$database_url" && redis_answers "$redis_url"; then
    write_env "$database_url" "$redis_url"
    exit 0
fi
if [ -f "$ENV_FILE" ]; then
    (
        # shellcheck disable=SC1090
        source "$ENV_FILE"
        pg_answers "$DATABASE_URL" && redis_answers "$REDIS_URL"
    ) && { say "reusing the servers in $ENV_FILE"; exit 0; }
fi

# 2. Docker.
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    say "starting PostgreSQL and Redis with docker compose"
    docker compose up -d --wait >&2
    write_env "$DEFAULT_DATABASE_URL" "$DEFAULT_REDIS_URL"
    exit 0
fi

# 3. Private servers from local binaries, for whichever of the two does not answer.
mkdir -p "$PRIVATE"
if ! pg_answers "$database_url"; then
    say "no PostgreSQL answers at $(mask "$database_url") and no Docker engine: starting a private one"
    database_url=$(start_private_postgres) || die "no PostgreSQL found. Install it (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), or Docker, or set DATABASE_URL to a running server."
fi
if ! redis_answers "$redis_url"; then
    say "no Redis answers at $(mask "$redis_url") and no Docker engine: starting a private one"
    redis_url=$(start_private_redis) || die "no redis-server found. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or Docker, or set REDIS_URL to a running server."
fi
pg_answers "$database_url" || die "the private PostgreSQL did not start (see $PRIVATE or its log)"
redis_answers "$redis_url" || die "the private Redis did not start (see $PRIVATE/redis.log)"
write_env "$database_url" "$redis_url"
