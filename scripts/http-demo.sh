#!/usr/bin/env bash
# The race over the network: `booking-cli serve` is the booking API, `booking-cli stress --target`
# races it with 20 users over HTTP, and the verdict is read from the database as always.
#   1. one server: --mode naive overbooks, --mode locked lets exactly one booking through;
#   2. three replicas on one PostgreSQL and one Redis — what a distributed lock exists for:
#      --mode mutex (a lock inside each process) overbooks across them, --mode locked holds.
# Every server is stopped with SIGTERM at the end (and must exit 0: a graceful drain).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

say() { printf '\n%s\n' "$*" >&2; }

scripts/services.sh
# shellcheck disable=SC1091
source target/services.env
export NO_COLOR=1
cargo build --release --locked >&2
cli=$(target_dir)/release/booking-cli
logs=$(mktemp -d)
pids=()
stop_servers() {
    local pid failed=0
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" || failed=1
    done
    pids=()
    return "$failed"
}
trap 'stop_servers || true; rm -rf "$logs"' EXIT

# Starts `serve` on a free port and sets $url to its base URL once it listens. (Not a command
# substitution: the server would hold its pipe open, and its pid would not reach this shell.)
serve() {
    local port
    port=$(free_port "${1:-18080}")
    "$cli" serve --listen "127.0.0.1:$port" --mode locked >/dev/null 2>"$logs/serve-$port.log" &
    pids+=("$!")
    for _ in $(seq 100); do tcp_open 127.0.0.1 "$port" && break; sleep 0.1; done
    tcp_open 127.0.0.1 "$port" || { cat "$logs/serve-$port.log" >&2; exit 1; }
    url="http://127.0.0.1:$port"
}

"$cli" db reset >&2
failed=0
run() { "$cli" stress --users 20 "$@" || failed=1; }

serve 18080
one=$url
say "==> one server at $one; 20 users POST /api/bookings for the last room — naive (X-Booking-Mode: naive)"
run --target "$one" --mode naive
say "==> the same server, --mode locked: a Redis lock per room-night around the same transaction"
run --target "$one" --mode locked

serve 18090
two=$url
serve 18100
three=$url
say "==> three replicas ($one, $two, $three) sharing PostgreSQL and Redis — mutex: a lock inside each process"
run --target "$one,$two,$three" --mode mutex
say "==> the same three replicas, --mode locked"
run --target "$one,$two,$three" --mode locked

say "==> SIGTERM to every server (each must drain and exit 0)"
stop_servers || failed=1
if [ "$failed" = 0 ]; then
    say "Over HTTP as in process: naive and the per-process mutex overbook, the Redis lock lets exactly one booking through."
else
    say "The HTTP demonstration did not hold: see above."
    exit 3
fi
