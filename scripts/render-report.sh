#!/usr/bin/env bash
# Renders a `stress --report` HTML file in headless Chromium to a PNG, and fails when the page
# logs anything to the console, asks for anything over the network, renders blank, or is wider
# than the window (a page-wide horizontal scroll: wide tables and drawings must scroll in their
# own box, at 390 px as at 1280).
#
#   scripts/render-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]     # default 1280x800
#
# Chromium comes from the Debian package `chromium`: installed with apt-get when missing and
# run as root, else the script says what to install. Needs python3 (to check the PNG).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

report=${1:?usage: scripts/render-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
png=${2:?usage: scripts/render-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
size=${3:-1280x800}
say() { echo "render-report: $*" >&2; }

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null; then
        browser=$candidate
        break
    fi
done
if [ -z "$browser" ]; then
    apt_install_missing chromium chromium || {
        say "chromium is missing (Debian/Ubuntu: apt-get install chromium)"
        exit 1
    }
    browser=chromium
fi

# Self-contained: nothing in the page may point outside it.
if grep -Eiq '(src|href)="(https?:)?//|url\((https?:)?//|@import' "$report"; then
    say "$report references an external resource"
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --enable-logging=stderr --v=0 prints the page's console messages; a timeout bounds the run.
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --disable-background-networking --no-first-run --enable-logging=stderr --v=0 \
    --window-size="${size/x/,}" --screenshot="$png" "file://$(realpath "$report")" 2>"$log" >/dev/null || {
    say "chromium failed:"
    tail -n 20 "$log" >&2
    exit 1
}
# The report has no script: any console message at all is an error of the page.
if grep -Eq 'CONSOLE|Uncaught' "$log"; then
    say "the page logged to the console:"
    grep -E 'CONSOLE|Uncaught' "$log" >&2
    exit 1
fi
# No page-wide horizontal scroll: measured by a copy of the page with one line of script (the
# report itself has none), which writes the page's scroll width and the window's into the DOM.
probe=$(mktemp --suffix=.html)
trap 'rm -f "$log" "$probe"' EXIT
# Headless Chromium lays a page out at least 500 px wide whatever --window-size says, so the
# copy lays itself out at the asked width (its root element that wide) and compares with that.
width=${size%x*}
# It also counts the drawings' words rendered too small to read (a line box under 9 px: an SVG
# scaled down to the width shrinks its text with it).
measure="document.documentElement.style.width = '${width}px'; var small = 0; document.querySelectorAll('svg text').forEach(function (t) { var h = t.getBoundingClientRect().height; if (h > 0 \&\& h < 9) { small++; } }); document.body.dataset.widths = document.body.scrollWidth + 'x' + ${width} + 'x' + small;"
sed "s#</body>#<script>${measure}</script></body>#" "$report" >"$probe"
widths=$(timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --disable-background-networking --no-first-run --window-size="${size/x/,}" \
    --dump-dom "file://$probe" 2>/dev/null | grep -o 'data-widths="[0-9]*x[0-9]*x[0-9]*"' | head -n 1 | tr -dc '0-9x')
scroll=${widths%%x*}
rest=${widths#*x}
window=${rest%x*}
small=${rest#*x}
if [ -n "$small" ] && [ "$small" != 0 ]; then
    say "$report: $small word(s) of its drawings render under 9 px high at $width px"
    exit 1
fi
if [ -z "$scroll" ] || [ -z "$window" ]; then
    say "could not measure the page's width"
    exit 1
fi
if [ "$scroll" -gt "$window" ]; then
    say "$report is $scroll px wide in a $window px window: a page-wide horizontal scroll"
    exit 1
fi

# Blank: a PNG whose pixels are all one colour.
python3 - "$png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width = 8, b"", 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    chunk = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
    elif kind == b"IDAT":
        idat += chunk
    pos += 12 + length
raw = zlib.decompress(idat)
# The filter byte of each row aside, a page with anything on it has more than a few distinct
# byte values; a blank one has one colour (and the few the row filters produce).
distinct = len(set(raw[i] for i in range(0, len(raw), 7)))
if distinct < 8:
    sys.exit(f"render-report: {sys.argv[1]} looks blank ({distinct} distinct byte values)")
print(f"render-report: {sys.argv[1]}: {width}x{height}, {distinct} distinct byte values")
PY
