# shellcheck shell=bash
# Helpers the scripts share: `source scripts/lib.sh` from the project root.
#
# Secrets never go on a command line, where `ps` shows them to every user of the machine:
# PostgreSQL clients get theirs through libpq's environment (PGPASSWORD and friends, see
# pg_env), redis-cli through REDISCLI_AUTH.

# The URL with its password replaced by ***, for messages.
mask() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# host and port of a URL, as "host port" (default port $2).
host_port() {
    local rest=${1#*://}
    rest=${rest##*@}
    rest=${rest%%/*}
    rest=${rest%%\?*}
    local host=${rest%:*} port=${rest##*:}
    [ "$host" = "$rest" ] && port=$2
    [ -n "$host" ] || host=127.0.0.1
    host=${host#[}
    printf '%s %s\n' "${host%]}" "$port"
}

# The password of a URL (percent-encoding left as it is), or nothing.
url_password() {
    local rest=${1#*://}
    case $rest in
        *@*) rest=${rest%%@*} ;;
        *) return 0 ;;
    esac
    case $rest in
        *:*) printf '%s' "${rest#*:}" ;;
    esac
}

# Prints `export PGHOST=… PGPORT=… PGUSER=… PGPASSWORD=… PGDATABASE=…` for a PostgreSQL URL,
# shell-quoted, for `eval`: libpq's clients (psql, pgbench, pg_isready) then connect without
# the URL on their command line. The URL is read from the environment variable named $1.
pg_env() {
    python3 - "$1" <<'PY'
import os, shlex, sys, urllib.parse as u
p = u.urlparse(os.environ[sys.argv[1]])
for name, value in (("PGHOST", p.hostname), ("PGPORT", p.port),
                    ("PGUSER", p.username and u.unquote(p.username)),
                    ("PGPASSWORD", p.password and u.unquote(p.password)),
                    ("PGDATABASE", p.path.lstrip("/"))):
    if value:
        print(f"export {name}={shlex.quote(str(value))}")
PY
}

# Where cargo puts its builds: CARGO_TARGET_DIR (or the build.target-dir setting) when set,
# else ./target. Scripts run the binaries they built from here.
target_dir() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    printf '%s\n' "${dir:-${CARGO_TARGET_DIR:-target}}"
}

# Whether something listens on host $1, port $2 (the values reach the inner shell as arguments,
# never as code).
# shellcheck disable=SC2016
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# The first port from $1 on that nothing on 127.0.0.1 listens on.
free_port() {
    local port=$1
    while tcp_open 127.0.0.1 "$port"; do port=$((port + 1)); done
    echo "$port"
}

# Makes command $1 available from the Debian package $2 when it is missing and this runs as root
# with apt-get (a fresh CI machine); says nothing otherwise. Succeeds when the command is there
# afterwards, so the caller decides what a missing tool means (fail, or skip a section).
apt_install_missing() {
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $2 (Debian package)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >&2 || true
    fi
    command -v "$1" >/dev/null
}
