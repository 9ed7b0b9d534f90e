#!/usr/bin/env bash
# A Redis Cluster of booking-cli's own, from redis-server alone (no Docker): 3 primaries with a
# replica each, on private loopback ports, every file under target/cluster/.
#
#   scripts/cluster.sh up       # starts the six nodes (or finds them running), creates the
#                               # cluster, waits until every node says cluster_state:ok with all
#                               # 16384 slots served, and writes REDIS_CLUSTER_URLS to
#                               # target/cluster/cluster.env (source it)
#   scripts/cluster.sh down     # stops every node it started and removes target/cluster/
#   scripts/cluster.sh status   # one line per node: port, role, the slots it serves
#
# CLUSTER_PORT (default 17100) is the first of the six client ports; each node's cluster bus is
# its port + 10000 (below 22768, so that the buses stay under Linux's ephemeral range,
# 32768–60999, where any outgoing connection may hold a port). CLUSTER_DIR (default target/cluster) holds
# the nodes' configs, logs and pid files: the tests run clusters of their own with both set.
# Nodes bind 127.0.0.1 only, keep nothing on disk (no RDB, no AOF) and time out a silent node
# after 2 s (cluster-node-timeout) and resynchronise a replica at once (repl-diskless-sync-delay
# 0, not 5 s), so that a failover is measured in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

base=${CLUSTER_PORT:-17100}
dir=${CLUSTER_DIR:-target/cluster}
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
nodes=6
say() { echo "cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

ports() { seq "$base" $((base + nodes - 1)); }
cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

up() {
    apt_install_missing redis-server redis-server ||
        die "redis-server is missing (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
    command -v redis-cli >/dev/null || die "redis-cli is missing (Debian/Ubuntu: apt-get install redis-tools)"
    [ $((base + nodes - 1 + 10000)) -le 65535 ] || die "CLUSTER_PORT $base: the cluster bus ports (port + 10000) must stay below 65536"
    mkdir -p "$dir"
    local port started=0
    for port in $(ports); do
        if [ "$(cli "$port" ping 2>/dev/null)" = PONG ]; then
            continue
        fi
        tcp_open 127.0.0.1 "$port" && die "port $port is taken by something that is not one of our nodes (set CLUSTER_PORT)"
        mkdir -p "$dir/$port"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --save "" --appendonly no --repl-diskless-sync-delay 0 --enable-debug-command local --pidfile "$dir/$port/redis.pid" \
            --logfile "$dir/$port/redis.log" >/dev/null
        started=$((started + 1))
    done
    for port in $(ports); do
        for _ in $(seq 1 50); do
            [ "$(cli "$port" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
        [ "$(cli "$port" ping 2>/dev/null)" = PONG ] || die "node $port did not start (see $dir/$port/redis.log)"
    done
    if ! healthy; then
        if [ "$(cli "$base" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 1 ]; then
            say "creating the cluster: 3 primaries, 1 replica each"
            local addresses=()
            for port in $(ports); do addresses+=("127.0.0.1:$port"); done
            redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
        fi
        for _ in $(seq 1 100); do
            healthy && break
            sleep 0.2
        done
        healthy || die "the cluster did not become healthy (redis-cli -p $base cluster info)"
    fi
    local urls=()
    for port in $(ports); do urls+=("redis://127.0.0.1:$port"); done
    (
        umask 077
        printf 'export REDIS_CLUSTER_URLS=%q\n' "$(IFS=,; echo "${urls[*]}")" >"$dir/cluster.env"
    )
    say "up: ${nodes} nodes on 127.0.0.1:${base}-$((base + nodes - 1)) (${started} started now); REDIS_CLUSTER_URLS in $dir/cluster.env"
}

# Every node says cluster_state:ok with all slots served, and three of them are primaries that
# each have a replica.
healthy() {
    local port info primaries=0 replicas=0
    for port in $(ports); do
        info=$(cli "$port" cluster info 2>/dev/null | tr -d '\r') || return 1
        grep -q '^cluster_state:ok$' <<<"$info" || return 1
        grep -q '^cluster_slots_ok:16384$' <<<"$info" || return 1
        case $(cli "$port" role 2>/dev/null | head -n 1) in
            master) primaries=$((primaries + 1)) ;;
            slave) replicas=$((replicas + 1)) ;;
        esac
    done
    [ "$primaries" = 3 ] && [ "$replicas" = 3 ]
}

down() {
    local port pid
    for port in $(ports); do
        if [ -f "$dir/$port/redis.pid" ]; then
            pid=$(cat "$dir/$port/redis.pid")
            # Only a redis-server we started: its pid file is ours, and the process is one.
            if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
                kill -CONT "$pid" 2>/dev/null || true
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -9 "$pid" 2>/dev/null || true
            fi
        fi
    done
    rm -rf "$dir"
    say "down: nothing of ours left on 127.0.0.1:${base}-$((base + nodes - 1))"
}

status() {
    local port
    for port in $(ports); do
        if [ "$(cli "$port" ping 2>/dev/null)" != PONG ]; then
            echo "$port down"
            continue
        fi
        # The node's own line of CLUSTER NODES: flags (myself,master / myself,slave), then, for
        # a primary, the slot ranges it serves.
        cli "$port" cluster nodes | tr -d '\r' | awk -v port="$port" '$3 ~ /myself/ {
            role = ($3 ~ /master/) ? "primary" : "replica"
            slots = ""
            for (i = 9; i <= NF; i++) slots = slots " " $i
            print port, role (slots == "" ? "" : " slots" slots)
        }'

    done
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: scripts/cluster.sh up|down|status (CLUSTER_PORT, CLUSTER_DIR: see the script's header)" >&2; exit 2 ;;
esac
