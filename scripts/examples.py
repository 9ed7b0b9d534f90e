#!/usr/bin/env python3
"""Regenerates the example outputs printed in README.md and docs/*.md.

Called by scripts/examples.sh, which starts the servers and builds the release binary first;
reads BOOKING_CLI (the binary), DATABASE_URL and REDIS_URL from the environment.

Two kinds of blocks are rewritten, each command by command (`$ …` lines; the output after each is
replaced by what the command prints now, stdout and stderr together):

* ```console blocks: deterministic outputs (help, errors, `db reset`, `book`, exit statuses).
  tests/docs.rs checks every one on each `cargo test`; this script only rewrites them after a
  change, in the same way the test runs them: a page's console blocks in order, on a freshly
  reset database, with `? N` written when the exit status is not 0.
* ```text blocks whose first line is a `# measured …` stamp: timings and rates. They are run
  after the page's console blocks, on a database reset again, and the stamp is rewritten with
  the date and the machine. A `<!-- examples: setup=NAME -->` line just before such a block names
  what the commands need around them (see Setup); `setup=slow` blocks (scripts/bench.sh, about
  30 minutes) run only with EXAMPLES_SLOW=1.

* the Markdown a script prints, between `<!-- examples: output of scripts/NAME.sh -->` and
  `<!-- examples: end -->` (the fault matrix of scripts/scenarios.sh), with the stamp above it.

A block whose commands use a tool this machine lacks (hey, psql, …) is kept as it was, and said.

Blocks of any other kind are left alone. Usage: examples.py [--console] [PAGE.md ...] (default:
all pages; --console rewrites the console blocks only, in seconds, after a change to a message
or a flag).
"""

import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOWN_URL = "postgres://postgres:***@127.0.0.1:5432/booking"
STEP_TIMEOUT = 600
# A slow block (setup=slow: the whole of scripts/bench.sh) runs for half an hour or more.
SLOW_TIMEOUT = 3600
# The programs the pages' commands use besides bash's own.
TOOLS = ("booking-cli", "hey", "psql", "curl", "redis-cli", "timeout", "jq")
FENCE = re.compile(r"^```(console|text)\s*$")
SETUP = re.compile(r"^<!-- examples: setup=([a-z0-9-]+) -->$")
REGION = re.compile(r"^<!-- examples: output of (scripts/[a-z0-9-]+\.sh) -->$")
REGION_END = "<!-- examples: end -->"

BINARY = os.environ["BOOKING_CLI"]
BUILD = "release" if f"{os.sep}release{os.sep}" in BINARY else "debug"
ENV = dict(os.environ)
ENV["PATH"] = os.path.dirname(BINARY) + os.pathsep + ENV.get("PATH", "")
ENV["COLUMNS"] = "100"
ENV["NO_COLOR"] = "1"
# The binary's own defaults, so that the stamp's psql and redis-cli ask the servers it used.
ENV.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/booking")
ENV.setdefault("REDIS_URL", "redis://127.0.0.1:6379")
for name in ("RUST_LOG", "BOOKING_DB_TIMEOUT", "BOOKING_THREADS", "LOCK_KEY_PREFIX"):
    ENV.pop(name, None)


def masked(url):
    """The URL as booking-cli prints it: its password replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def normalise(output):
    """What differs between this machine and the page: the database URL and name."""
    url = ENV.get("DATABASE_URL")
    if url:
        output = output.replace(masked(url), SHOWN_URL)
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        if name and name != "booking":
            output = output.replace(name, "booking")
    return output


def run(command, env=None, timeout=STEP_TIMEOUT):
    """Runs one `$` line in bash from the project root; returns (status, output)."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env or ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    output = done.stdout.decode("utf-8", "replace")
    # HTTP headers end in CRLF, psql pads its columns: neither belongs in a page.
    output = "\n".join(line.rstrip() for line in output.split("\n"))
    return done.returncode, normalise(output)


def missing_tools(body):
    """The programs the block's commands start that this machine does not have."""
    missing = set()
    for line in body:
        if line.startswith("$ "):
            for word in line[2:].split():
                if word in TOOLS and not shutil.which(word, path=ENV["PATH"]):
                    missing.add(word)
    return sorted(missing)


def db_reset():
    status, output = run("booking-cli db reset")
    if status != 0:
        sys.exit(f"examples: db reset failed: {output.strip()}")


def stamp(slow=False):
    """When and where: the date, the machine, the servers' versions."""
    def first_line(command):
        status, output = run(command)
        lines = output.strip().splitlines()
        return lines[0] if status == 0 and lines else "?"

    postgres = first_line("psql -XAtc 'show server_version' \"$DATABASE_URL\" 2>/dev/null")
    redis = first_line("redis-cli -u \"$REDIS_URL\" info server 2>/dev/null | "
                       "sed -n 's/^redis_version:\\(.*\\)\\r*$/\\1/p'")
    cores = os.cpu_count()
    today = datetime.date.today().isoformat()
    return (f"# measured {today} on {cores} cores ({platform.machine()}), PostgreSQL "
            f"{postgres.split()[0]}, Redis {redis.strip()}, {BUILD} build; "
            f"{'EXAMPLES_SLOW=1 ' if slow else ''}scripts/examples.sh regenerates this")


class Setup:
    """What a measured block needs around its commands, named by its setup= line."""

    def __init__(self, name):
        self.name = name
        self.env = dict(ENV)
        self.processes = []

    def __enter__(self):
        # redlock-3: three instances for --redis-url; private-redis: one for a command that
        # pauses every client of its server (--chaos pause-redis), so never the shared one;
        # cluster: a Redis Cluster of its own (--redis-cluster "$REDIS_CLUSTER_URLS").
        if self.name in ("redlock-3", "private-redis"):
            ports = [57001, 57002, 57003] if self.name == "redlock-3" else [57004]
            for port in ports:
                self.processes.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda: all(run(f"redis-cli -p {p} ping")[1].strip() == "PONG"
                                 for p in ports))
        elif self.name == "cluster":
            # A Redis Cluster of its own (scripts/cluster.sh), its seeds in REDIS_CLUSTER_URLS.
            self.cluster = {**ENV, "CLUSTER_PORT": "17400",
                            "CLUSTER_DIR": os.path.join(ROOT, "target", "examples-cluster")}
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "cluster.sh"), "up"],
                           env=self.cluster, check=True, stdout=subprocess.DEVNULL)
            self.env["REDIS_CLUSTER_URLS"] = ",".join(
                f"redis://127.0.0.1:{port}" for port in range(17400, 17406))
        elif self.name == "serve":
            self.processes.append(subprocess.Popen(
                [BINARY, "serve", "--mode", "locked", "--listen", "127.0.0.1:8080"],
                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda: ping("http://127.0.0.1:8080/ping"))
        else:
            sys.exit(f"examples: unknown setup={self.name}")
        return self

    def __exit__(self, *exc):
        if self.name == "cluster":
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "cluster.sh"), "down"],
                           env=self.cluster, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def ping(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(ready, seconds=10):
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            sys.exit("examples: a setup did not come up within 10 s")
        time.sleep(0.1)


def blocks(lines):
    """(kind, first body line, end line, setup) of every console or measured text block."""
    found, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start = index + 1
        end = start
        while not lines[end].startswith("```"):
            end += 1
        kind = match.group(1)
        setup = SETUP.match(lines[index - 1].strip()) if index else None
        measured = kind == "text" and start < end and lines[start].startswith("# measured")
        if kind == "console" or measured:
            found.append((kind, start, end, setup.group(1) if setup else None))
        index = end + 1
    return found


def regenerate(kind, body, setup, slow=False):
    """The block's new body: each `$` command followed by what it prints now."""
    commands, previous = [], ""
    for line in body:
        if line.startswith("$ "):
            commands.append([line])
        elif line.startswith("> ") and previous.startswith(("$ ", "> ")):
            # A command continued: `> ` right after its `$ ` line, before any output.
            commands[-1].append(line)
        previous = line
    out = [stamp(slow)] if kind == "text" else []
    env = setup.env if setup else ENV
    for command in commands:
        status, output = run(" ".join(part[2:] for part in command), env,
                             SLOW_TIMEOUT if slow else STEP_TIMEOUT)
        out.extend(command)
        if kind == "console" and status != 0:
            out.append(f"? {status}")
        out.extend(output.rstrip("\n").split("\n") if output.strip() else [])
    return out


def regions(lines):
    """Rewrites every script-output region in place: the stamp, then what the script prints."""
    index = 0
    while index < len(lines):
        match = REGION.match(lines[index])
        if not match:
            index += 1
            continue
        end = lines.index(REGION_END, index)
        script = match.group(1)
        print(f"examples: {script}", file=sys.stderr)
        done = subprocess.run(["bash", script], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              timeout=STEP_TIMEOUT, check=True)
        output = done.stdout.decode("utf-8").rstrip("\n").split("\n")
        stamped = "_" + stamp()[2:].replace("measured", "Measured", 1) + "._"
        lines[index + 1:end] = [stamped, ""] + output
        index += 3 + len(output)


def page(path, console_only):
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if not console_only and any(REGION.match(line) for line in lines):
        regions(lines)
    found = [block for block in blocks(lines) if block[0] == "console" or not console_only]
    if not found:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))
        return
    # Console blocks first, on a fresh database, as tests/docs.rs runs them; then the measured
    # ones, on a database reset again. Rewritten from the last block up, so line numbers hold.
    new = {}
    for wanted in ("console", "text"):
        todo = [block for block in found if block[0] == wanted]
        if todo:
            db_reset()
        for kind, start, end, setup in todo:
            where = f"{os.path.relpath(path, ROOT)}:{start}"
            missing = missing_tools(lines[start:end])
            if missing or (setup == "slow" and os.environ.get("EXAMPLES_SLOW") != "1"):
                why = f"{', '.join(missing)} not installed" if missing else "EXAMPLES_SLOW=1 runs it"
                print(f"examples: {where}: kept as it was ({why})", file=sys.stderr)
                new[start] = lines[start:end]
                continue
            print(f"examples: {where} ({kind})", file=sys.stderr)
            if setup == "slow":
                new[start] = regenerate(kind, lines[start:end], None, slow=True)
            elif setup:
                with Setup(setup) as context:
                    new[start] = regenerate(kind, lines[start:end], context)
            else:
                new[start] = regenerate(kind, lines[start:end], None)
    for kind, start, end, setup in sorted(found, key=lambda block: -block[1]):
        lines[start:end] = new[start]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


def main():
    args = sys.argv[1:]
    console_only = "--console" in args
    args = [arg for arg in args if arg != "--console"]
    pages = args or [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", name)
        for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
    for path in pages:
        page(path, console_only)


if __name__ == "__main__":
    main()
