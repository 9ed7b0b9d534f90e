#!/usr/bin/env bash
# A bounded fuzzing pass against a live `serve` by a tool nobody here wrote: schemathesis (from
# PyPI, pinned, in a venv under target/) reads serve's own GET /openapi.json and sends what the
# document allows and what it does not. It fails on any 5xx, any status the document does not
# list, a content type or body that contradicts it. Afterwards every night's booked_count must
# equal its confirmed rows: a fuzzed API that wrote half a booking is caught here too.
#
#   scripts/fuzz-api.sh [BOOKING_CLI]          # called by scripts/test.sh
#   FUZZ_EXAMPLES=200 scripts/fuzz-api.sh      # more examples per operation (default 40)
#
# Uses DATABASE_URL's server, on a database of its own (booking_fuzz, reset here), a Redis key
# prefix of its own, and a serve on a free loopback port; every request goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

say() { echo "fuzz-api: $*" >&2; }
cli=${1:-$(target_dir)/debug/booking-cli}
examples=${FUZZ_EXAMPLES:-40}
if [ -z "${DATABASE_URL:-}" ]; then
    scripts/services.sh
    # shellcheck disable=SC1091
    source target/services.env
fi
export NO_COLOR=1
export DATABASE_URL="${DATABASE_URL%/*}/booking_fuzz"
export LOCK_KEY_PREFIX=booking-cli-fuzz:
eval "$(pg_env DATABASE_URL)"

venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    say "installing schemathesis 4.32.5 into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5 >&2
fi

"$cli" db reset >&2
port=$(free_port 18530)
"$cli" serve --listen "127.0.0.1:$port" --mode locked --hold-ms 0 >target/fuzz-serve.log 2>&1 &
serve_pid=$!
stop_serve() { kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; }
trap stop_serve EXIT
for _ in $(seq 100); do tcp_open 127.0.0.1 "$port" && break; sleep 0.1; done
tcp_open 127.0.0.1 "$port" || { say "serve did not listen (target/fuzz-serve.log)"; exit 1; }

say "schemathesis against http://127.0.0.1:$port/openapi.json, $examples examples per operation"
status=0
timeout 600 "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "$examples" \
    --request-timeout 10 \
    --seed 1 \
    --no-color || status=$?
stop_serve

drift=$(psql -q -X -At -c "SELECT count(*) FROM booking_cli.inventory i
    WHERE i.booked_count <> (SELECT count(*) FROM booking_cli.bookings b
        WHERE b.room_id = i.room_id AND b.status IN ('confirmed', 'held')
          AND b.start_date <= i.date AND b.end_date > i.date)")
booked=$(psql -q -X -At -c "SELECT count(*) FROM booking_cli.bookings")
say "after the pass: $booked booking(s) written, $drift night(s) whose booked_count differs from its rows"
if [ "$drift" != 0 ]; then
    say "the database is inconsistent after the fuzzing pass"
    exit 1
fi
exit "$status"
