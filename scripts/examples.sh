#!/usr/bin/env bash
# Regenerates the example outputs of README.md and docs/*.md: the deterministic ones (```console
# blocks, which tests/docs.rs checks) and the measured ones (```text blocks stamped "# measured …",
# which get today's date and this machine). Review the diff before committing it: a measured
# figure that moved is news, not noise.
#
#   scripts/examples.sh                 # every page
#   scripts/examples.sh docs/cli.md     # one page
#   scripts/examples.sh --console     # the checked (console) blocks only, in seconds
#
# Uses the database at DATABASE_URL (booking-cli's own schema in it is reset, as by `db reset`)
# and the Redis at REDIS_URL; the blocks marked setup=redlock-3 / private-redis start their own
# redis-server on ports 57001–57004. The performance figures come from scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

scripts/services.sh
# shellcheck disable=SC1091
source target/services.env

# The HTTP examples drive `serve` with hey, as docs/http.md shows it.
# (examples.py keeps those blocks as they were when hey is still missing.)
apt_install_missing hey hey || true

cargo build --release --locked
BOOKING_CLI="$(target_dir)/release/booking-cli"
export BOOKING_CLI
python3 scripts/examples.py "$@"
