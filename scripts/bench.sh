#!/usr/bin/env bash
# Throughput of each strategy against the server's own limit, measured in one run:
# booking-cli's closed loop (`stress --duration`) against pgbench running the very same SQL
# (scripts/bench/<strategy>.sql) in prepared mode, at the same concurrency on the same slot
# spread (10 rooms × 17 nights, inventory large enough never to sell out). For `locked`, pgbench
# runs its database part alone (naive.sql), so the ratio shows what the Redis round trips cost.
# Prints a table of figures and ratios (tool ÷ limit) and writes target/bench/bench.json.
#
#   scripts/bench.sh                    # 16 users, 10 s per measurement
#   BENCH_USERS=8 BENCH_SECONDS=5 scripts/bench.sh
#
# Not yet measured here (see the README's "Performance"): the lock alone against
# redis-benchmark, and the 1,000 / 10,000 / 100,000-user scale runs.
set -euo pipefail
cd "$(dirname "$0")/.."

users=${BENCH_USERS:-16}
seconds=${BENCH_SECONDS:-10}
for tool in pgbench python3; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool is missing (Debian/Ubuntu: apt-get install postgresql-client python3)" >&2
        exit 1
    }
done

scripts/services.sh
# shellcheck disable=SC1091
source target/services.env
export NO_COLOR=1
cargo build --release --locked >&2
cli=target/release/booking-cli
"$cli" db reset >&2
mkdir -p target/bench
spread=(--rooms 10 --from 2024-12-20 --to 2025-01-06 --hold-ms 0 --users "$users")

# Prepare the spread (inventory 1,000,000 on every slot) once, with a short run.
"$cli" stress --mode atomic --duration 1s "${spread[@]}" --json >/dev/null

results=target/bench/runs.jsonl
: >"$results"
for mode in naive lost-update row-lock atomic advisory serializable locked; do
    sql=scripts/bench/$mode.sql
    [ "$mode" = locked ] && sql=scripts/bench/naive.sql
    echo "bench: $mode — booking-cli, then pgbench -M prepared, ${seconds}s each at $users users" >&2
    tool=$("$cli" stress --mode "$mode" --duration "${seconds}s" "${spread[@]}" --json \
        --lock-wait-ms 10000 --serializable-retries 50)
    limit=$(pgbench -n -M prepared -c "$users" -j 2 -T "$seconds" --max-tries 50 -f "$sql" "$DATABASE_URL" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    python3 -c '
import json, sys
tool = json.loads(sys.argv[1])
print(json.dumps({"strategy": sys.argv[2], "sql": sys.argv[3], "tool_bookings_per_sec": round(tool["bookings_per_sec"], 1),
    "tool_p50_ms": tool["latency"]["p50_ms"], "tool_p99_ms": tool["latency"]["p99_ms"], "tool_errors": tool["errors"],
    "tool_verdict": tool["verdict"], "pgbench_tps": float(sys.argv[4] or 0)}))' "$tool" "$mode" "$sql" "$limit" >>"$results"
done

python3 - "$results" "$users" "$seconds" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    r["ratio"] = round(r["tool_bookings_per_sec"] / r["pgbench_tps"], 2) if r["pgbench_tps"] else None
head = f"{'strategy':<13} {'booking-cli /s':>14} {'pgbench tps':>12} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  verdict"
print(f"bench: {sys.argv[2]} users, {sys.argv[3]} s per measurement, pgbench -M prepared on the same SQL")
print(head)
print("-" * len(head))
for r in rows:
    print(f"{r['strategy']:<13} {r['tool_bookings_per_sec']:>14.0f} {r['pgbench_tps']:>12.0f} {r['ratio'] or 0:>6.2f} "
          f"{r['tool_p50_ms']:>7.2f} {r['tool_p99_ms']:>7.2f}  {r['tool_verdict']}")
json.dump({"users": int(sys.argv[2]), "seconds": int(sys.argv[3]), "strategies": rows},
          open("target/bench/bench.json", "w"), indent=2)
print("written: target/bench/bench.json")
PY
