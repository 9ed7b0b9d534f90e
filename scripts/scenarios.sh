#!/usr/bin/env bash
# The distributed and fault lab as one matrix: every strategy under every scenario, each run
# judged from the database. Prints a Markdown table (what docs/faults.md shows).
#   scripts/scenarios.sh            # release build, services from scripts/services.sh
# Needs python3 (to read the JSON) and redis-server (three private instances for Redlock, and a
# Redis Cluster of its own from scripts/cluster.sh on ports 17200–17205 and 27200–27205 for the
# failover column; SCENARIOS_CLUSTER_PORT moves them). The pause-redis scenario pauses the Redis
# at REDIS_URL for 5 s per lock strategy: use a Redis of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/services.sh
# shellcheck disable=SC1091
source target/services.env
export NO_COLOR=1
cargo build --release --locked >&2
cli=$(target_dir)/release/booking-cli
"$cli" db reset >&2
dir=target/scenarios; mkdir -p "$dir"
export CLUSTER_PORT=${SCENARIOS_CLUSTER_PORT:-17200} CLUSTER_DIR=$dir/cluster
cleanup() {
    for i in 1 2 3; do [ -f "$dir/redis-$i.pid" ] && kill "$(cat "$dir/redis-$i.pid")" 2>/dev/null; done
    scripts/cluster.sh down 2>/dev/null
    true
}
trap cleanup EXIT
scripts/cluster.sh up
# Only the failover column locks on the cluster (its flag says so); every other run keeps the
# Redis at REDIS_URL, so the variable is read, not exported.
unset REDIS_CLUSTER_URLS
cluster_urls=$(
    # shellcheck disable=SC1091
    source "$CLUSTER_DIR/cluster.env"
    echo "$REDIS_CLUSTER_URLS"
)

# Every registered strategy, in the order --mode all runs them.
mapfile -t modes < <("$cli" strategies --names)
declare -A scenarios=(
    [reference]="--users 20"
    [processes-4]="--users 20 --processes 4"
    [lock-expiry]="--users 20 --lock-ttl-ms 100 --hold-ttl-ms 100 --hold-ms 400 --lock-wait-ms 5000 --lock-retry-delay-ms 10"
    [redis-paused]="--users 20 --hold-ms 300 --lock-wait-ms 3000 --chaos pause-redis@100"
    [backend-killed]="--users 20 --inventory 3 --chaos kill-backend@100"
    [failover]="--users 20 --hold-ms 4000 --lock-ttl-ms 20000 --lock-wait-ms 10000 --chaos failover@100 --redis-cluster $cluster_urls"
)
order=(reference processes-4 lock-expiry redis-paused backend-killed failover)
# What each strategy locks on: only those that lock on one Redis (the cluster, here) can lose a
# lock in its failover; Redlock keeps its independent instances.
declare -A needs
while read -r name need; do needs[$name]=$need; done < <("$cli" strategies --json |
    python3 -c 'import json, sys; [print(s["name"], s["needs"]) for s in json.load(sys.stdin)]')

# Judge one run's JSON: overbooked / safe / failed closed (errors, nothing oversold).
judge() {
    python3 -c '
import json, sys
j = json.load(sys.stdin)
v = j["verdict"]
if j["overbooked"]:
    print("overbooked (%d sold)" % j["created"])
elif j["errors"] and j["created"] == 0:
    print("failed closed (%d errors)" % j["errors"])
elif j["errors"]:
    print("safe; %d failed closed" % j["errors"])
elif "UNDER_SOLD" in j["verdicts"]:
    print("safe, under-sold")
else:
    print("safe")
'
}

printf '| strategy |'; for s in "${order[@]}"; do printf ' %s |' "$s"; done; printf '\n|---|'
for _ in "${order[@]}"; do printf -- '---|'; done; printf '\n'
for mode in "${modes[@]}"; do
    # Markdown backticks, not a command substitution.
    # shellcheck disable=SC2016
    printf '| `%s` |' "$mode"
    for s in "${order[@]}"; do
        if [ "$s" = failover ] && [ "${needs[$mode]}" != redis ]; then
            case ${needs[$mode]} in
                redlock) printf ' n/a (independent instances, not a cluster) |' ;;
                *) printf ' n/a (no Redis) |' ;;
            esac
            continue
        fi
        # shellcheck disable=SC2086
        json=$("$cli" stress --mode "$mode" ${scenarios[$s]} --json 2>/dev/null) || true
        cell=$(judge <<<"$json" 2>/dev/null || echo "run failed")
        printf ' %s |' "$cell"
        if [[ $s == redis-paused && $mode =~ ^(locked|fenced|redlock)$ ]]; then sleep 5; fi
    done
    printf '\n'
done

# Redlock over three private instances: all up, one stopped, two stopped.
ports=()
for i in 1 2 3; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$PWD/$dir/redis-$i.pid" --logfile "$PWD/$dir/redis-$i.log" >/dev/null
    ports+=("$port")
done
sleep 0.5
urls="redis://127.0.0.1:${ports[0]},redis://127.0.0.1:${ports[1]},redis://127.0.0.1:${ports[2]}"
# shellcheck disable=SC2016
printf '\n| `redlock` over 3 instances | all up | one stopped | two stopped |\n|---|---|---|---|\n| |'
for down in 0 1 2; do
    if [ "$down" -ge 1 ]; then kill "$(cat "$dir/redis-$((4 - down)).pid")"; sleep 0.3; fi
    json=$("$cli" --redis-url "$urls" stress --mode redlock --json 2>/dev/null) || true
    cell=$(judge <<<"$json" 2>/dev/null || echo "run failed")
    printf ' %s |' "$cell"
done
printf '\n'
