#!/usr/bin/env bash
# What each strategy costs, against the servers' own limits measured in the same run.
#
#   scripts/bench.sh                                  # 16 users, 5 s per measurement, 3 runs
#   BENCH_USERS=8 BENCH_SECONDS=10 BENCH_RUNS=5 scripts/bench.sh
#   BENCH_SCALE="1000 10000" scripts/bench.sh         # skip the 100,000-user runs (~6 min)
#
# 1. Strategies: booking-cli's closed loop (`stress --duration`) against pgbench running the very
#    same SQL (scripts/bench/<strategy>.sql) in prepared mode, at the same concurrency on the
#    same slot spread (10 rooms × 17 nights, inventory never sold out). For `locked`, pgbench runs
#    its database part alone (naive.sql), so the ratio shows what the Redis round trips cost.
#    pgbench on one-statement.sql — the booking as one statement — is the single-statement
#    ceiling: the yardstick of the fastest safe strategy (target ≥ 0.85).
#    Tool and pgbench alternate, BENCH_RUNS times over all strategies: each ratio is taken within
#    a pair of back-to-back runs, then the median is reported.
# 2. The lock alone: `booking-cli bench lock` (acquire + release pairs on distinct keys through
#    the project's lock code) as it runs by default (one runtime thread: see its --help), and
#    for information with a thread per core, against
#    redis-benchmark running the same two commands (SET NX PX, and EVALSHA of the lock's own
#    src/lock/release.lua) at the same concurrency, unpipelined (-P 1) and pipelined (-P 16).
#    A pair rate is 1 / (1/rate(SET) + 1/rate(EVALSHA)); the EVALSHA runs release keys that
#    are held (a key space filled first), as the tool's releases do. For information, also
#    with 4 × the tasks: redis-benchmark -P 16 keeps 16 commands in flight per connection,
#    a task one.
#    serializable runs with --serializable-backoff-ms 2: pgbench retries at once (see docs/performance.md).
# 3. The reference run: `stress --users 20 --mode locked` five times (target: hold + 150 ms),
#    and `--mode reserve` five times (target: p95 of the refusals ≤ 20 ms).
# 4. Scale: stress --users 1,000 / 10,000 / 100,000 on one slot and on 1,000 one-night slots
#    (db reset --rooms 1000), with peak memory from /usr/bin/time.
# 5. Over HTTP: `serve` driven by hey (installed with apt-get when missing and run as root;
#    else skipped, saying what to install) at the same concurrency, for atomic and locked, as a
#    ratio to the direct closed loop on the same slot, with p50/p99 of each.
# 6. One hot room-night (inventory 1,000,000) and 100 users: at hold 0, every strategy against
#    pgbench running its SQL on that one row, at the tool's 32 lanes (sharded on 32 shards;
#    batched against pgbench -c 1, one combiner's connection, with batches of the tool's mean
#    size), beside the uncontended rate of one-statement on 1,000 one-night slots; targets: the
#    best of sharded/batched ≥ 0.8 × that and ≥ 4 × one-statement on the hot night, both ≥ 0.85
#    × pgbench on their own SQL. The tool runs on one runtime thread here (see below). At hold
#    200 ms, reserve against atomic (target ≥ 10 ×).
# 7. On a Redis Cluster of the benchmark's own (scripts/cluster.sh: 3 primaries with a replica
#    each, ports 17300–17305 or BENCH_CLUSTER_PORT): `bench lock --redis-cluster` against
#    `redis-benchmark --cluster` running the same two commands at the same concurrency, -P 1 and
#    -P 16 (target ≥ 0.6 × -P 16, as on one instance), and the reference run over the cluster,
#    five times. The cluster is taken down at the end, also when the benchmark fails.
# 8. Race detection (scripts/bench/race-detection.sh): serve --mode naive --hold-ms 0 raced 100
#    times each by race --sync none / last-byte / single-packet, hey and k6, overbooked k/100 and
#    the arrival spread at serve; serve --mode atomic must hold every run under every sync mode.
#
# Prints the figures and ratios, latency histograms per strategy, and writes
# target/bench/bench.json and target/bench/throughput.svg (scripts/bench/report.py).
# The database is reset (1,000 rooms) at the start and left that way; Redis keeps nothing:
# every key the benchmark writes is under booking-cli:bench:, and only those are deleted.
# pgbench gets the connection through libpq's environment (PGPASSWORD, …), never a command
# line; redis-benchmark takes a password only on its command line, so a Redis with a password
# is refused (benchmark against one of your own, or the private one scripts/services.sh starts).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

users=${BENCH_USERS:-16}
seconds=${BENCH_SECONDS:-5}
runs=${BENCH_RUNS:-3}
scale_users=${BENCH_SCALE:-1000 10000 100000}
for tool in pgbench redis-benchmark redis-cli python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool is missing (Debian/Ubuntu: apt-get install postgresql-client redis-tools python3 time)" >&2
        exit 1
    }
done
say() { echo "bench: $*" >&2; }

scripts/services.sh
# shellcheck disable=SC1091
source target/services.env
export NO_COLOR=1
if [ -n "$(url_password "$REDIS_URL")" ]; then
    echo "bench: REDIS_URL has a password, which redis-benchmark would show on its command line; use a Redis without one" >&2
    exit 1
fi
eval "$(pg_env DATABASE_URL)"
cargo build --release --locked >&2
cli=$(target_dir)/release/booking-cli
out=target/bench
mkdir -p "$out"
"$cli" db reset --rooms 1000 >&2
spread=(--rooms 10 --from 2024-12-20 --to 2025-01-06 --hold-ms 0 --users "$users")
# Prepare the spread (inventory 1,000,000 on every slot) with a short run.
"$cli" stress --mode atomic --duration 1s "${spread[@]}" --json >/dev/null

# 1. Strategies against pgbench.
: >"$out/strategies.jsonl"
for run in $(seq 1 "$runs"); do
    for mode in naive lost-update row-lock atomic advisory serializable locked one-statement sharded batched reserve; do
        sql=scripts/bench/$mode.sql
        [ "$mode" = locked ] && sql=scripts/bench/naive.sql
        # On spread slots a batch is one booking (its users seldom share a night).
        say "run $run/$runs: $mode — booking-cli, then pgbench -M prepared, ${seconds}s each at $users users"
        "$cli" stress --mode "$mode" --duration "${seconds}s" "${spread[@]}" --json \
            --lock-wait-ms 10000 --serializable-retries 50 --serializable-backoff-ms 2 >"$out/strategy-run.json"
        limit=$(pgbench -n -M prepared -c "$users" -j 2 -T "$seconds" --max-tries 50 -D batch=1 -f "$sql" 2>&1 |
            sed -n 's/^tps = \([0-9.]*\).*/\1/p')
        python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(json.dumps({"run": int(sys.argv[2]), "strategy": sys.argv[3], "sql": sys.argv[4],
    "tool": t["bookings_per_sec"], "pgbench": float(sys.argv[5] or 0),
    "p50_ms": t["latency"]["p50_ms"], "p99_ms": t["latency"]["p99_ms"], "errors": t["errors"],
    "verdict": t["verdict"], "histogram": t["latency_histogram"],
    "latency_by_outcome": t["latency_by_outcome"]}))' "$out/strategy-run.json" "$run" "$mode" "$sql" "$limit" \
            >>"$out/strategies.jsonl"
    done
done

# 2. The lock alone.
read -r redis_host redis_port < <(host_port "$REDIS_URL" 6379)
rcli() { redis-cli -h "$redis_host" -p "$redis_port" "$@"; }
sha=$(rcli SCRIPT LOAD "$(cat src/lock/release.lua)")
rate() { # pipeline, key space, command...
    local p=$1 keys=$2
    shift 2
    redis-benchmark -h "$redis_host" -p "$redis_port" -c "$users" -n 300000 -P "$p" -r "$keys" --csv "$@" |
        tail -n 1 | cut -d, -f2 | tr -d '"'
}
# A release must find its key holding the token, as every release of `bench lock` does: the
# script's no-key path (GET only) is far cheaper than GET + DEL + PUBLISH. So the releases run
# on a key space filled with held keys first; some draws still hit a key an earlier draw
# released, and the share that found one is reported (the yardstick stays a little generous).
# Every measurement of a round — the tool's too — runs beside that million keys, so that Redis
# works on a dictionary of the same size for all of them; no key expires during a round.
held=1000000
fill() {
    redis-benchmark -h "$redis_host" -p "$redis_port" -c "$users" -n $((held * 3)) -P 16 -r "$held" -q \
        SET 'booking-cli:bench:held:__rand_int__' tok PX 600000 >/dev/null
}
clean() {
    rcli --scan --pattern 'booking-cli:bench:*' |
        xargs -r -n 10000 redis-cli -h "$redis_host" -p "$redis_port" UNLINK >/dev/null
}
# How many held keys the benchmark has in Redis (its own only: other keys may be there).
held_keys() { rcli --scan --pattern 'booking-cli:bench:held:*' | wc -l; }
release_rate() { # pipeline → "rate released"
    fill
    local before after r
    before=$(held_keys)
    r=$(rate "$1" "$held" EVALSHA "$sha" 1 'booking-cli:bench:held:__rand_int__' tok)
    after=$(held_keys)
    echo "$r $((before - after))"
}
: >"$out/lock.jsonl"
for run in $(seq 1 "$runs"); do
    say "run $run/$runs: lock — booking-cli bench lock (the default, a thread per core), redis-benchmark -P 1 and -P 16"
    clean
    fill
    one=$("$cli" bench lock --concurrency "$users" --duration "${seconds}s")
    default=$("$cli" --threads "$(nproc)" bench lock --concurrency "$users" --duration "${seconds}s")
    deep=$("$cli" bench lock --concurrency $((users * 4)) --duration "${seconds}s")
    set_1=$(rate 1 100000000 SET 'booking-cli:bench:__rand_int__' tok NX PX 600000)
    set_16=$(rate 16 100000000 SET 'booking-cli:bench:__rand_int__' tok NX PX 600000)
    read -r eval_1 released_1 < <(release_rate 1)
    read -r eval_16 released_16 < <(release_rate 16)
    python3 -c '
import json, sys
default, per_core, deep = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[7])
print(json.dumps({"default": default["pairs_per_sec"], "default_threads": default["threads"],
    "per_core": per_core["pairs_per_sec"], "per_core_threads": per_core["threads"],
    "default_4x_tasks": deep["pairs_per_sec"], "tasks_4x": deep["concurrency"],
    "set_p1": float(sys.argv[3]), "eval_p1": float(sys.argv[4]),
    "set_p16": float(sys.argv[5]), "eval_p16": float(sys.argv[6]),
    "released_share_p1": int(sys.argv[8]) / 300000, "released_share_p16": int(sys.argv[9]) / 300000}))' \
        "$one" "$default" "$set_1" "$eval_1" "$set_16" "$eval_16" "$deep" "$released_1" "$released_16" \
        >>"$out/lock.jsonl"
done
clean

# The sections before leave a million dead booking rows behind (every run's bookings are
# deleted when the next prepares its slot), faster than autovacuum clears them on a small
# machine. A reference run is a 20-user race on a healthy table: vacuum booking-cli's own tables
# first. (reserve's refusals scan the room's holds index, whose dead entries a vacuum removes.)
vacuum() { psql -q -X -c 'VACUUM (ANALYZE) booking_cli.bookings, booking_cli.inventory' >&2; }

# 3. The reference run.
vacuum
say "reference run: stress --users 20 --mode locked, 5 times"
: >"$out/reference.jsonl"
for _ in 1 2 3 4 5; do
    "$cli" stress --users 20 --mode locked --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(json.dumps({"elapsed_ms": j["elapsed_ms"], "hold_ms": j["hold_ms"], "created": j["created"],
    "conflicts": j["conflicts_sold_out"] + j["conflicts_lock"], "errors": j["errors"],
    "booked_count": j["booked_count"]}))' >>"$out/reference.jsonl"
done

say "reference run: stress --users 20 --mode reserve, 5 times"
: >"$out/reserve-reference.jsonl"
for _ in 1 2 3 4 5; do
    "$cli" stress --users 20 --mode reserve --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
refused = j["latency_by_outcome"].get("on_hold") or j["latency_by_outcome"].get("sold_out") or {}
print(json.dumps({"created": j["created"], "verdict": j["verdict"], "elapsed_ms": j["elapsed_ms"],
    "refused": j["refused_on_hold"] + j["conflicts_sold_out"], "refused_p95_ms": refused.get("p95_ms"),
    "created_p50_ms": j["latency_by_outcome"].get("created", {}).get("p50_ms")}))' >>"$out/reserve-reference.jsonl"
done

# 4. Scale.
: >"$out/scale.jsonl"
for n in $scale_users; do
    for where in one-slot 1000-slots; do
        case $where in
            one-slot) slot=(--room 1 --from 2024-12-25 --nights 1) label="one slot" ;;
            1000-slots) slot=(--rooms 1000 --from 2024-12-25 --nights 1) label="1,000 slots" ;;
        esac
        say "scale: $n users, $label"
        /usr/bin/time -f '%M' -o "$out/time.txt" "$cli" stress --mode atomic --users "$n" \
            --hold-ms 0 --inventory 1000000 "${slot[@]}" --json >"$out/scale-run.json"
        python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
peak_kb = int(open(sys.argv[3]).read().split()[-1])
print(json.dumps({"users": j["users"], "where": sys.argv[2], "created": j["created"], "errors": j["errors"],
    "bookings_per_sec": round(j["bookings_per_sec"], 1), "elapsed_ms": j["elapsed_ms"],
    "verdict": j["verdict"], "peak_rss_mb": round(peak_kb / 1024, 1)}))' "$out/scale-run.json" "$label" "$out/time.txt" \
            >>"$out/scale.jsonl"
    done
done

# 5. What the network costs: `serve` driven by hey at the same concurrency as the direct runs,
#    against the direct closed loop on the same single slot (hey sends one body again and again,
#    so both sides book one room-night, inventory 1,000,000, hold 0).
: >"$out/http.jsonl"
if apt_install_missing hey hey; then
    port=$(free_port 18180)
    "$cli" serve --listen "127.0.0.1:$port" --hold-ms 0 --lock-wait-ms 10000 \
        --max-in-flight $((users * 4)) 2>"$out/serve.log" &
    serve_pid=$!
    for _ in $(seq 100); do tcp_open 127.0.0.1 "$port" && break; sleep 0.1; done
    hot=(--room 2 --from 2024-12-25 --nights 1 --inventory 1000000 --hold-ms 0 --users "$users")
    body='{"user_id":"6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f","room_id":2,"start_date":"2024-12-25","end_date":"2024-12-26"}'
    for run in $(seq 1 "$runs"); do
        for mode in atomic locked; do
            say "run $run/$runs: over HTTP — $mode: stress --duration, then hey against serve, ${seconds}s each at $users users"
            "$cli" stress --mode "$mode" --duration "${seconds}s" "${hot[@]}" --lock-wait-ms 10000 --json >"$out/direct.json"
            hey -z "${seconds}s" -c "$users" -m POST -T application/json -H "X-Booking-Mode: $mode" \
                -d "$body" "http://127.0.0.1:$port/api/bookings" >"$out/hey.txt"
            python3 - "$out/direct.json" "$out/hey.txt" "$run" "$mode" >>"$out/http.jsonl" <<'PY'
import json, re, sys
direct = json.load(open(sys.argv[1]))
hey = open(sys.argv[2]).read()
total = float(re.search(r"Total:\s+([0-9.]+) secs", hey).group(1))
created = sum(int(n) for n in re.findall(r"\[201\]\s+(\d+) responses", hey))
other = sum(int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", hey) if code != "201")
p = lambda q: float(re.search(rf"\s{q}% in ([0-9.]+) secs", hey).group(1)) * 1000
print(json.dumps({"run": int(sys.argv[3]), "strategy": sys.argv[4],
    "direct": direct["bookings_per_sec"], "direct_p50_ms": direct["latency"]["p50_ms"],
    "direct_p99_ms": direct["latency"]["p99_ms"], "http": created / total if total else 0,
    "http_p50_ms": p(50), "http_p99_ms": p(99), "http_other_statuses": other}))
PY
        done
    done
    kill -TERM "$serve_pid"
    wait "$serve_pid" || say "serve did not stop cleanly (see $out/serve.log)"
else
    say "hey is missing: the HTTP ratio is skipped (Debian/Ubuntu: apt-get install hey)"
fi

# 6. One hot room-night.
vacuum
# One runtime thread, as `bench lock` runs by default: on a small machine the client's second
# thread only takes a core from PostgreSQL, which is what a hot row is short of (measured:
# batched 25,887/s on two threads, 29,152/s on one; one-statement 2,170 and 2,200).
hot=(--room 3 --from 2024-12-25 --nights 1 --inventory 1000000 --users 100 --connections 33 --shards 32 --threads 1)
hot_sql() { # the strategy's SQL pinned to room 3, 2024-12-25
    sed -e 's/^\\set room .*/\\set room 3/' -e 's/^\\set d .*/\\set d 5/' "$1" >"$out/hot.sql"
}
: >"$out/hot.jsonl"
mapfile -t every < <("$cli" strategies --names)
for mode in "${every[@]}"; do
    sql=scripts/bench/$mode.sql
    [ -f "$sql" ] || sql=scripts/bench/naive.sql
    say "hot slot: $mode at hold 0 — booking-cli, then pgbench on the same row, ${seconds}s each"
    "$cli" stress --mode "$mode" --duration "${seconds}s" "${hot[@]}" --hold-ms 0 --lock-wait-ms 10000 \
        --serializable-retries 50 --serializable-backoff-ms 2 --expect any --json >"$out/hot-run.json"
    hot_sql "$sql"
    # A combiner sends one statement at a time: pgbench on one connection, each transaction a
    # batch of the tool's mean size (its rate in bookings is tps × that).
    clients=32 batch=1
    if [ "$mode" = batched ]; then
        clients=1
        batch=$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))["batches"]; print(max(1, round(b["bookings"] / max(b["batches"], 1))))' "$out/hot-run.json")
    fi
    limit=$(pgbench -n -M prepared -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$seconds" --max-tries 50 -D batch="$batch" \
        -f "$out/hot.sql" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
batch = int(sys.argv[5])
print(json.dumps({"strategy": sys.argv[2], "hold_ms": 0, "sql": sys.argv[3], "tool": t["bookings_per_sec"],
    "pgbench": float(sys.argv[4] or 0) * batch, "pgbench_clients": int(sys.argv[6]), "pgbench_batch": batch,
    "verdict": t["verdict"], "errors": t["errors"], "p99_ms": t["latency"]["p99_ms"],
    "batches": t.get("batches"), "shard_waits": t.get("shard_waits"),
    "latency_by_outcome": t["latency_by_outcome"]}))' "$out/hot-run.json" "$mode" "$sql" "$limit" "$batch" "$clients" >>"$out/hot.jsonl"
done
say "cold slots: one-statement at hold 0 on 1,000 one-night slots, ${seconds}s"
"$cli" stress --mode one-statement --duration "${seconds}s" --room 1 --rooms 1000 --from 2024-12-25 --nights 1 \
    --inventory 1000000 --users 100 --connections 33 --threads 1 --hold-ms 0 --json >"$out/hot-run.json"
python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(json.dumps({"strategy": "one-statement", "hold_ms": 0, "cold": True, "tool": t["bookings_per_sec"],
    "verdict": t["verdict"], "errors": t["errors"], "p99_ms": t["latency"]["p99_ms"],
    "latency_by_outcome": t["latency_by_outcome"]}))' "$out/hot-run.json" >>"$out/hot.jsonl"
for mode in atomic reserve; do
    say "hot slot: $mode at hold 200 ms, ${seconds}s"
    "$cli" stress --mode "$mode" --duration "${seconds}s" "${hot[@]}" --hold-ms 200 --lock-wait-ms 10000 \
        --expect any --json >"$out/hot-run.json"
    python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(json.dumps({"strategy": sys.argv[2], "hold_ms": 200, "tool": t["bookings_per_sec"], "verdict": t["verdict"],
    "errors": t["errors"], "latency_by_outcome": t["latency_by_outcome"]}))' "$out/hot-run.json" "$mode" >>"$out/hot.jsonl"
done

# 7. On a Redis Cluster. It holds nothing but the benchmark's keys, so each round starts from
#    FLUSHALL on every primary. redis-benchmark --cluster routes a command by the `{tag}` in its
#    key, which it replaces with a tag of each node's slots.
export CLUSTER_PORT=${BENCH_CLUSTER_PORT:-17300} CLUSTER_DIR=$PWD/$out/cluster
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
scripts/cluster.sh up
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"
cluster_cli() { redis-cli -h 127.0.0.1 -p "$@"; }
primaries() {
    local port
    for port in $(seq "$CLUSTER_PORT" $((CLUSTER_PORT + 5))); do
        [ "$(cluster_cli "$port" role | head -n 1)" = master ] && echo "$port"
    done
    return 0
}
cluster_keys() { # keys on every primary
    local port total=0
    for port in $(primaries); do total=$((total + $(cluster_cli "$port" dbsize))); done
    echo "$total"
}
cluster_rate() { # pipeline, key space, command...
    local p=$1 keys=$2
    shift 2
    redis-benchmark --cluster -h 127.0.0.1 -p "$CLUSTER_PORT" -c "$users" -n 300000 -P "$p" -r "$keys" --csv "$@" 2>/dev/null |
        tail -n 1 | cut -d, -f2 | tr -d '"'
}
cluster_fresh() { # empty primaries, the release script loaded on each, held keys filled
    local port
    for port in $(primaries); do
        cluster_cli "$port" FLUSHALL >/dev/null
        cluster_cli "$port" SCRIPT LOAD "$(cat src/lock/release.lua)" >/dev/null
    done
    redis-benchmark --cluster -h 127.0.0.1 -p "$CLUSTER_PORT" -c "$users" -n $((held * 3)) -P 16 -r "$held" -q \
        SET 'booking-cli:bench:held:{tag}:__rand_int__' tok PX 600000 >/dev/null 2>&1
}
: >"$out/cluster-lock.jsonl"
for run in $(seq 1 "$runs"); do
    say "run $run/$runs: lock on the cluster — booking-cli bench lock --redis-cluster, redis-benchmark --cluster -P 1 and -P 16"
    cluster_fresh
    tool=$("$cli" bench lock --redis-cluster "$REDIS_CLUSTER_URLS" --concurrency "$users" --duration "${seconds}s")
    deep=$("$cli" bench lock --redis-cluster "$REDIS_CLUSTER_URLS" --concurrency $((users * 4)) --duration "${seconds}s")
    set_1=$(cluster_rate 1 100000000 SET 'booking-cli:bench:{tag}:__rand_int__' tok NX PX 600000)
    set_16=$(cluster_rate 16 100000000 SET 'booking-cli:bench:{tag}:__rand_int__' tok NX PX 600000)
    released=()
    evals=()
    for p in 1 16; do
        cluster_fresh
        before=$(cluster_keys)
        evals+=("$(cluster_rate "$p" "$held" EVALSHA "$sha" 1 'booking-cli:bench:held:{tag}:__rand_int__' tok)")
        released+=($((before - $(cluster_keys))))
    done
    python3 -c '
import json, sys
tool, deep = json.loads(sys.argv[1]), json.loads(sys.argv[8])
print(json.dumps({"tool": tool["pairs_per_sec"], "threads": tool["threads"],
    "tool_4x_tasks": deep["pairs_per_sec"], "tasks_4x": deep["concurrency"],
    "set_p1": float(sys.argv[2]), "set_p16": float(sys.argv[3]),
    "eval_p1": float(sys.argv[4]), "eval_p16": float(sys.argv[5]),
    "released_share_p1": int(sys.argv[6]) / 300000, "released_share_p16": int(sys.argv[7]) / 300000}))' \
        "$tool" "$set_1" "$set_16" "${evals[0]}" "${evals[1]}" "${released[0]}" "${released[1]}" "$deep" >>"$out/cluster-lock.jsonl"
done
say "reference run over the cluster: stress --users 20 --mode locked --redis-cluster, 5 times"
: >"$out/cluster-reference.jsonl"
for _ in 1 2 3 4 5; do
    "$cli" stress --users 20 --mode locked --redis-cluster "$REDIS_CLUSTER_URLS" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(json.dumps({"elapsed_ms": j["elapsed_ms"], "hold_ms": j["hold_ms"], "created": j["created"],
    "conflicts": j["conflicts_sold_out"] + j["conflicts_lock"], "errors": j["errors"],
    "booked_count": j["booked_count"], "verdict": j["verdict"]}))' >>"$out/cluster-reference.jsonl"
done
scripts/cluster.sh down
trap - EXIT
# The cluster is gone: nothing after this may lock on it (serve would try, and not start).
unset REDIS_CLUSTER_URLS

python3 scripts/bench/report.py "$users" "$seconds" "$runs"

# 8. Race detection, on a database of its own.
scripts/bench/race-detection.sh
