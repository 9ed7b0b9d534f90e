#!/usr/bin/env python3
"""The table, histograms, JSON and SVG chart of one scripts/bench.sh run.

Reads the JSON lines that bench.sh wrote under target/bench/ and prints medians of the
interleaved runs, with each ratio computed per run (tool and limit measured back to back) and
then taken as the median. Writes target/bench/bench.json and target/bench/throughput.svg.
Standard library only.
"""

import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

OUT = Path("target/bench")
TARGETS = {"locked": 0.75}  # every other strategy: 0.85 (PostgreSQL alone)
LOCK_TARGET = 0.6
BARS = "▏▎▍▌▋▊▉█"


def lines(name):
    path = OUT / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def bar(value, peak, width=32):
    """A horizontal bar in eighths of a character."""
    if peak <= 0:
        return ""
    eighths = round(value / peak * width * 8)
    return "█" * (eighths // 8) + (BARS[eighths % 8 - 1] if eighths % 8 else "")


def strategies(settings):
    runs = lines("strategies.jsonl")
    order = list(dict.fromkeys(r["strategy"] for r in runs))
    rows = []
    for name in order:
        mine = [r for r in runs if r["strategy"] == name]
        ratios = [r["tool"] / r["pgbench"] if r["pgbench"] else None for r in mine]
        # The run whose throughput is the median, for its latency and histogram.
        middle = sorted(mine, key=lambda r: r["tool"])[len(mine) // 2]
        ratio = median(ratios)
        target = TARGETS.get(name, 0.85)
        rows.append({
            "strategy": name,
            "sql": mine[0]["sql"],
            "runs": len(mine),
            "tool_bookings_per_sec": round(median([r["tool"] for r in mine]), 1),
            "pgbench_tps": round(median([r["pgbench"] for r in mine]), 1),
            "ratio": round(ratio, 2) if ratio is not None else None,
            "ratios": [round(r, 2) if r is not None else None for r in ratios],
            "target": target,
            "met": ratio is not None and ratio >= target,
            "tool_p50_ms": middle["p50_ms"],
            "tool_p99_ms": middle["p99_ms"],
            "tool_errors": sum(r["errors"] for r in mine),
            "verdicts": sorted({r["verdict"] for r in mine}),
            "latency_histogram": middle["histogram"],
            "latency_by_outcome": middle.get("latency_by_outcome", {}),
        })
    print(f"bench: {settings['users']} users, {settings['seconds']} s per measurement, "
          f"median of {settings['runs']} interleaved runs; pgbench -M prepared on the same SQL")
    head = (f"{'strategy':<13} {'booking-cli/s':>13} {'pgbench tps':>11} {'ratio':>6} {'target':>7} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  ratios per run       verdict")
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = "met" if r["met"] else "MISSED"
        runs_text = " ".join(f"{x:.2f}" if x is not None else "-" for x in r["ratios"])
        print(f"{r['strategy']:<13} {r['tool_bookings_per_sec']:>13.0f} {r['pgbench_tps']:>11.0f} "
              f"{r['ratio'] or 0:>6.2f} {'≥' + format(r['target'], '.2f'):>7} {r['tool_p50_ms']:>7.2f} "
              f"{r['tool_p99_ms']:>7.2f} {r['tool_errors']:>6}  {runs_text:<20} {'/'.join(r['verdicts'])} ({mark})")
    return rows


def histograms(rows):
    print()
    print("latency per booking (the median run of each strategy; 8 bands up to p99, then the tail):")
    for r in rows:
        bands = r["latency_histogram"]
        peak = max((b["count"] for b in bands), default=0)
        total = sum(b["count"] for b in bands) or 1
        print(f"  {r['strategy']}: {outcome_line(r.get('latency_by_outcome') or {})}")
        lower = 0.0
        for b in bands:
            share = b["count"] / total * 100
            print(f"    {lower:>7.2f} – {b['upper_ms']:>7.2f} ms │{bar(b['count'], peak, 30):<30} {share:5.1f} %")
            lower = b["upper_ms"]


def lock():
    runs = lines("lock.jsonl")
    pair = lambda a, b: 1 / (1 / a + 1 / b)
    per_run = []
    for r in runs:
        p1, p16 = pair(r["set_p1"], r["eval_p1"]), pair(r["set_p16"], r["eval_p16"])
        per_run.append({"default": r["default"], "per_core": r["per_core"], "deep": r["default_4x_tasks"],
                        "p1": p1, "p16": p16, "ratio_p16": r["default"] / p16,
                        "ratio_p16_per_core": r["per_core"] / p16, "ratio_p16_deep": r["default_4x_tasks"] / p16,
                        "ratio_p1": r["default"] / p1})
    m = lambda key: median([r[key] for r in per_run])
    first = runs[0] if runs else {}
    result = {
        "runs": len(per_run),
        "booking_cli_pairs_per_sec_default": round(m("default")),
        "default_threads": first.get("default_threads"),
        "booking_cli_pairs_per_sec_per_core_threads": round(m("per_core")),
        "per_core_threads": first.get("per_core_threads"),
        "booking_cli_pairs_per_sec_default_4x_tasks": round(m("deep")),
        "tasks_4x": first.get("tasks_4x"),
        "redis_benchmark_pairs_per_sec_p1": round(m("p1")),
        "redis_benchmark_pairs_per_sec_p16": round(m("p16")),
        "ratio_to_p1": round(m("ratio_p1"), 2),
        "ratio_to_p16": round(m("ratio_p16"), 2),
        "ratio_to_p16_per_core_threads": round(m("ratio_p16_per_core"), 2),
        "ratio_to_p16_4x_tasks": round(m("ratio_p16_deep"), 2),
        "ratios_to_p16_per_run": [round(r["ratio_p16"], 2) for r in per_run],
        "redis_benchmark_releases_that_found_their_key": round(median([r["released_share_p16"] for r in runs]), 2),
        "target": LOCK_TARGET,
        "met": m("ratio_p16") >= LOCK_TARGET,
    }
    print()
    print(f"lock alone (acquire + release pairs/s on distinct keys, median of {result['runs']} runs):")
    print(f"  booking-cli bench lock (the default, {result['default_threads']} thread) {result['booking_cli_pairs_per_sec_default']:>8}   "
          f"÷ -P 16 = {result['ratio_to_p16']:.2f} (target ≥ {LOCK_TARGET}: {'met' if result['met'] else 'MISSED'}; "
          f"per run {' '.join(f'{x:.2f}' for x in result['ratios_to_p16_per_run'])}), ÷ -P 1 = {result['ratio_to_p1']:.2f}")
    print(f"  booking-cli --threads {result['per_core_threads']}             {result['booking_cli_pairs_per_sec_per_core_threads']:>8}   "
          f"÷ -P 16 = {result['ratio_to_p16_per_core_threads']:.2f} (for information: a thread per core)")
    print(f"  booking-cli, {result['tasks_4x']} tasks              {result['booking_cli_pairs_per_sec_default_4x_tasks']:>8}   "
          f"÷ -P 16 = {result['ratio_to_p16_4x_tasks']:.2f} (for information: more commands in flight)")
    print(f"  redis-benchmark -P 1               {result['redis_benchmark_pairs_per_sec_p1']:>8}")
    print(f"  redis-benchmark -P 16              {result['redis_benchmark_pairs_per_sec_p16']:>8}   "
          f"({result['redis_benchmark_releases_that_found_their_key']:.0%} of its releases found their key held; the rest took the cheap no-key path)")
    return result


def ceiling():
    """The fastest safe strategy against the single-statement ceiling (pgbench on
    one-statement.sql), per run, then the median."""
    runs = lines("strategies.jsonl")
    unsafe = {"naive", "lost-update"}
    by_run = {}
    for r in runs:
        by_run.setdefault(r["run"], {})[r["strategy"]] = r
    tool = {}
    for r in runs:
        if r["strategy"] not in unsafe:
            tool.setdefault(r["strategy"], []).append(r["tool"])
    if not tool or not any("one-statement" in run for run in by_run.values()):
        return {"skipped": True}
    fastest = max(tool, key=lambda name: median(tool[name]))
    ratios = [run[fastest]["tool"] / run["one-statement"]["pgbench"]
              for run in by_run.values() if fastest in run and run["one-statement"]["pgbench"]]
    result = {"fastest_safe_strategy": fastest, "bookings_per_sec": round(median(tool[fastest]), 1),
              "single_statement_ceiling_tps": round(median([run["one-statement"]["pgbench"] for run in by_run.values()]), 1),
              "ratio": round(median(ratios), 2), "ratios": [round(x, 2) for x in ratios], "target": 0.85}
    result["met"] = result["ratio"] >= 0.85
    print()
    print(f"fastest safe strategy, uncontended: {fastest} {result['bookings_per_sec']:.0f}/s ÷ the single-statement "
          f"ceiling (pgbench -M prepared on one-statement.sql) {result['single_statement_ceiling_tps']:.0f}/s = "
          f"{result['ratio']:.2f} (target ≥ 0.85: {'met' if result['met'] else 'MISSED'}; per run "
          f"{' '.join(f'{x:.2f}' for x in result['ratios'])})")
    return result


def outcome_line(by_outcome):
    return "  ".join(f"{name} {v['count']}× p50 {v['p50_ms']:.1f} p95 {v['p95_ms']:.1f}"
                     for name, v in sorted(by_outcome.items()))


def hot():
    """One hot room-night: every strategy at hold 0 against pgbench on the same row; reserve
    against atomic at hold 200 ms."""
    path = OUT / "hot.jsonl"
    rows = lines("hot.jsonl") if path.exists() else []
    if not rows:
        return {"skipped": True}
    print()
    print("one hot room-night (inventory 1,000,000), 100 users on 32 lanes, one runtime thread, hold 0 — pgbench on the same row "
          "(-c 32; batched: -c 1, batches of the tool's mean size; sharded on 32 shards):")
    print(f"  {'strategy':<14} {'booking-cli/s':>13} {'pgbench/s':>10} {'ratio':>6} {'p99 ms':>7}  latency by outcome (ms)")
    zero = [r for r in rows if r["hold_ms"] == 0 and not r.get("cold")]
    for r in zero:
        ratio = r["tool"] / r["pgbench"] if r.get("pgbench") else None
        r["ratio"] = round(ratio, 2) if ratio else None
        note = ""
        if r.get("batches"):
            b = r["batches"]
            note = f"  [{b['batches']:,} batches, {b['bookings'] / max(b['batches'], 1):.1f} per batch, pgbench batch {r['pgbench_batch']}]"
        if r.get("shard_waits") is not None:
            note = f"  [{r['shard_waits']} waited for a busy shard]"
        print(f"  {r['strategy']:<14} {r['tool']:>13.0f} {r.get('pgbench') or 0:>10.0f} {ratio or 0:>6.2f} "
              f"{r.get('p99_ms') or 0:>7.1f}  {outcome_line(r['latency_by_outcome'])}{note}")
    slow = {r["strategy"]: r for r in rows if r["hold_ms"] == 200}
    result = {"hold_0": zero, "hold_200": list(slow.values())}
    cold = next((r for r in rows if r.get("cold")), None)
    by = {r["strategy"]: r for r in zero}
    if cold and "one-statement" in by and ("sharded" in by or "batched" in by):
        best = max((by[m] for m in ("sharded", "batched") if m in by), key=lambda r: r["tool"])
        over_cold = best["tool"] / cold["tool"] if cold["tool"] else 0
        over_hot = best["tool"] / by["one-statement"]["tool"] if by["one-statement"]["tool"] else 0
        own = {m: by[m].get("ratio") or 0 for m in ("sharded", "batched") if m in by}
        flash = {
            "cold_one_statement_per_sec": cold["tool"], "cold_p99_ms": cold.get("p99_ms"),
            "best": best["strategy"], "best_over_cold": round(over_cold, 2),
            "best_over_hot_one_statement": round(over_hot, 2), "over_own_pgbench": own,
            "met": over_cold >= 0.8 and over_hot >= 4 and all(v >= 0.85 for v in own.values()),
        }
        result["flash_sale"] = flash
        print(f"  uncontended: one-statement on 1,000 one-night slots, same users and lanes: {cold['tool']:.0f}/s "
              f"(p99 {cold.get('p99_ms') or 0:.1f} ms)")
        print(f"  flash sale: best of sharded/batched ({best['strategy']}) {best['tool']:.0f}/s = {over_cold:.2f} × the "
              f"uncontended rate (target ≥ 0.8) and {over_hot:.1f} × one-statement on the hot night (target ≥ 4); "
              + ", ".join(f"{m} {v:.2f} × pgbench on its SQL" for m, v in own.items())
              + f" (target ≥ 0.85): {'met' if flash['met'] else 'MISSED'}")
    if "atomic" in slow and "reserve" in slow and slow["atomic"]["tool"]:
        ratio = slow["reserve"]["tool"] / slow["atomic"]["tool"]
        result.update({"reserve_over_atomic_at_hold_200": round(ratio, 1), "target": 10, "met": ratio >= 10})
        print(f"  at hold 200 ms: reserve {slow['reserve']['tool']:.1f}/s ÷ atomic {slow['atomic']['tool']:.1f}/s = "
              f"{ratio:.1f} × (target ≥ 10: {'met' if result['met'] else 'MISSED'})")
    return result


def reserve_reference():
    path = OUT / "reserve-reference.jsonl"
    runs = lines("reserve-reference.jsonl") if path.exists() else []
    if not runs:
        return {"skipped": True}
    p95 = [r["refused_p95_ms"] for r in runs]
    result = {"runs": runs, "refused_p95_ms": p95, "median_refused_p95_ms": median(p95), "target_ms": 20}
    result["met"] = result["median_refused_p95_ms"] is not None and result["median_refused_p95_ms"] <= 20
    print(f"reference run, reserve, 20 users, inventory 1, hold 200 ms: p95 of the refusals "
          f"{' '.join(f'{x:.1f}' for x in p95 if x is not None)} ms, median {result['median_refused_p95_ms']:.1f} "
          f"(target ≤ 20: {'met' if result['met'] else 'MISSED'}); created/refused: "
          f"{', '.join(sorted({str(r['created']) + '/' + str(r['refused']) + ' ' + r['verdict'] for r in runs}))}")
    return result


def reference():
    runs = lines("reference.jsonl")
    elapsed = [r["elapsed_ms"] for r in runs]
    hold = runs[0]["hold_ms"] if runs else 200
    result = {
        "runs": len(runs),
        "elapsed_ms": elapsed,
        "median_elapsed_ms": median(elapsed),
        "hold_ms": hold,
        "target_ms": hold + 150,
        "outcomes": sorted({f"{r['created']}/{r['conflicts']}/{r['errors']} booked_count {r['booked_count']}" for r in runs}),
    }
    result["met"] = result["median_elapsed_ms"] is not None and result["median_elapsed_ms"] <= result["target_ms"]
    print()
    print(f"reference run, locked, 20 users, inventory 1, hold {hold} ms: elapsed {' '.join(map(str, elapsed))} ms, "
          f"median {result['median_elapsed_ms']} (target ≤ {result['target_ms']}: {'met' if result['met'] else 'MISSED'}); "
          f"created/409/errors: {', '.join(result['outcomes'])}")
    return result


def cluster():
    """The lock and the reference run on a Redis Cluster (section 7)."""
    if not (OUT / "cluster-lock.jsonl").exists():
        return {"skipped": True}
    runs = lines("cluster-lock.jsonl")
    pair = lambda a, b: 1 / (1 / a + 1 / b) if a and b else None
    per_run = [{"tool": r["tool"], "deep": r.get("tool_4x_tasks"), "p1": pair(r["set_p1"], r["eval_p1"]),
                "p16": pair(r["set_p16"], r["eval_p16"])} for r in runs]
    ratios_deep = [r["deep"] / r["p16"] if r["deep"] and r["p16"] else None for r in per_run]
    ratios = [r["tool"] / r["p16"] if r["p16"] else None for r in per_run]
    ratios_p1 = [r["tool"] / r["p1"] if r["p1"] else None for r in per_run]
    ratio = median(ratios)
    reference_runs = lines("cluster-reference.jsonl") if (OUT / "cluster-reference.jsonl").exists() else []
    elapsed = [r["elapsed_ms"] for r in reference_runs]
    result = {
        "runs": len(per_run),
        "booking_cli_pairs_per_sec": round(median([r["tool"] for r in per_run]) or 0),
        "threads": runs[0]["threads"] if runs else None,
        "redis_benchmark_pairs_per_sec_p1": round(median([r["p1"] for r in per_run]) or 0),
        "redis_benchmark_pairs_per_sec_p16": round(median([r["p16"] for r in per_run]) or 0),
        "ratio_to_p16": round(ratio, 2) if ratio is not None else None,
        "ratios_to_p16_per_run": [round(r, 2) if r is not None else None for r in ratios],
        "ratio_to_p1": round(median(ratios_p1), 2) if median(ratios_p1) is not None else None,
        "booking_cli_pairs_per_sec_4x_tasks": round(median([r["deep"] for r in per_run]) or 0),
        "tasks_4x": runs[0].get("tasks_4x") if runs else None,
        "ratio_to_p16_4x_tasks": round(median(ratios_deep), 2) if median(ratios_deep) is not None else None,
        "redis_benchmark_releases_that_found_their_key": round(median([r["released_share_p16"] for r in runs]) or 0, 2),
        "target": LOCK_TARGET,
        "met": ratio is not None and ratio >= LOCK_TARGET,
        "reference_elapsed_ms": elapsed,
        "reference_median_elapsed_ms": median(elapsed),
        "reference_outcomes": sorted({f"{r['created']}/{r['conflicts']}/{r['errors']} booked_count {r['booked_count']} {r['verdict']}"
                                      for r in reference_runs}),
    }
    print()
    print(f"on a Redis Cluster (3 primaries, 3 replicas; acquire + release pairs/s, median of {result['runs']} runs):")
    print(f"  booking-cli bench lock --redis-cluster ({result['threads']} thread) {result['booking_cli_pairs_per_sec']:>8}   "
          f"÷ -P 16 = {result['ratio_to_p16'] or 0:.2f} (target ≥ {LOCK_TARGET}: {'met' if result['met'] else 'MISSED'}; "
          f"per run {' '.join(f'{x:.2f}' if x is not None else '-' for x in result['ratios_to_p16_per_run'])}), "
          f"÷ -P 1 = {result['ratio_to_p1'] or 0:.2f}")
    print(f"  booking-cli, {result['tasks_4x']} tasks                   {result['booking_cli_pairs_per_sec_4x_tasks']:>8}   "
          f"÷ -P 16 = {result['ratio_to_p16_4x_tasks'] or 0:.2f} (for information: more commands in flight)")
    print(f"  redis-benchmark --cluster -P 1          {result['redis_benchmark_pairs_per_sec_p1']:>8}")
    print(f"  redis-benchmark --cluster -P 16         {result['redis_benchmark_pairs_per_sec_p16']:>8}   "
          f"({result['redis_benchmark_releases_that_found_their_key']:.0%} of its releases found their key held)")
    print(f"  reference run over the cluster (locked, 20 users): elapsed {' '.join(map(str, elapsed))} ms, "
          f"median {result['reference_median_elapsed_ms']}; created/409/errors: {', '.join(result['reference_outcomes'])}")
    return result


def scale():
    rows = lines("scale.jsonl")
    print()
    print(f"{'scale (atomic, hold 0)':<26} {'created':>8} {'errors':>7} {'bookings/s':>11} {'elapsed ms':>11} {'peak MB':>8}")
    for r in rows:
        label = f"{r['users']:,} users, {r['where']}"
        print(f"{label:<26} {r['created']:>8} {r['errors']:>7} {r['bookings_per_sec']:>11.0f} {r['elapsed_ms']:>11} {r['peak_rss_mb']:>8}")
    by = {(r["users"], r["where"]): r for r in rows}
    small, large = by.get((1000, "1,000 slots")), by.get((100000, "1,000 slots"))
    result = {"runs": rows}
    if small and large:
        ratio = large["bookings_per_sec"] / small["bookings_per_sec"]
        result["throughput_100k_over_1k_on_1000_slots"] = round(ratio, 2)
        result["peak_mb_100k"] = large["peak_rss_mb"]
        result["met"] = ratio >= 0.9 and large["peak_rss_mb"] < 100
        print(f"100,000 ÷ 1,000 users on 1,000 slots: {ratio:.2f} × the bookings/s (target ≥ 0.9), "
              f"peak {large['peak_rss_mb']} MB (target < 100): {'met' if result['met'] else 'MISSED'}")
    return result


def http():
    """HTTP bookings/s (serve driven by hey) ÷ the direct closed loop, on the same hot slot."""
    path = OUT / "http.jsonl"
    rows = lines("http.jsonl") if path.exists() else []
    print()
    if not rows:
        print("over HTTP: skipped (hey missing)")
        return {"skipped": True}
    print(f"{'over HTTP (one slot, hold 0)':<30} {'direct/s':>9} {'HTTP/s':>8} {'ratio':>6} {'target':>7} "
          f"{'p50 ms direct/HTTP':>19} {'p99 ms direct/HTTP':>19} {'other statuses':>15}")
    result = {}
    for strategy in sorted({r["strategy"] for r in rows}):
        runs = [r for r in rows if r["strategy"] == strategy]
        ratios = [r["http"] / r["direct"] for r in runs if r["direct"]]
        target = 0.7 if strategy == "atomic" else None
        entry = {
            "direct": median([r["direct"] for r in runs]), "http": median([r["http"] for r in runs]),
            "ratio": median(ratios), "ratios": ratios, "target": target,
            "direct_p50_ms": median([r["direct_p50_ms"] for r in runs]),
            "http_p50_ms": median([r["http_p50_ms"] for r in runs]),
            "direct_p99_ms": median([r["direct_p99_ms"] for r in runs]),
            "http_p99_ms": median([r["http_p99_ms"] for r in runs]),
            "http_other_statuses": sum(r["http_other_statuses"] for r in runs),
        }
        entry["met"] = None if target is None else (entry["ratio"] or 0) >= target
        result[strategy] = entry
        mark = "" if target is None else f"≥{target} ({'met' if entry['met'] else 'MISSED'})"
        print(f"{strategy:<30} {entry['direct']:>9.0f} {entry['http']:>8.0f} {entry['ratio'] or 0:>6.2f} {mark:>7} "
              f"{entry['direct_p50_ms']:>9.2f}/{entry['http_p50_ms']:<9.2f} {entry['direct_p99_ms']:>9.2f}/{entry['http_p99_ms']:<9.2f} "
              f"{entry['http_other_statuses']:>15}")
    return result


def svg(rows, lock_result, settings, hot_result=None):
    """Grouped horizontal bars: each strategy against pgbench, the lock against redis-benchmark.
    The conditions are in the image itself, so that a copy of it out of context still says them."""
    width, label_w, bar_h, gap = 860, 130, 14, 10
    plot_w = width - label_w - 250  # room for the longest bar's label
    parts = []
    y = 40

    def text(x, y, s, size=12, anchor="start", weight="normal"):
        s = s.replace("&", "&amp;").replace("<", "&lt;")
        parts.append(f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">{s}</text>')

    def group(title, unit, items):
        nonlocal y
        text(10, y, title, 14, weight="bold")
        y += 14
        peak = max(v for _, pairs in items for _, v, _ in pairs) or 1
        for name, pairs in items:
            text(label_w - 8, y + bar_h * len(pairs) / 2 + 4, name, anchor="end")
            for legend, value, colour in pairs:
                w = value / peak * plot_w
                parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}"/>')
                text(label_w + w + 4, y + bar_h - 4, f"{value:,.0f} {unit} {legend}", 10)
                y += bar_h
            y += gap
        y += 16

    conditions = (f"{settings['users']} users, hold 0 ms, 10 rooms x 17 nights (never sold out), "
                  f"{settings['seconds']} s x {settings['runs']} interleaved runs; "
                  f"{os.cpu_count()} cores ({platform.machine()}) shared by client and servers; "
                  f"{datetime.date.today().isoformat()}")
    text(10, 18, "booking-cli scripts/bench.sh: " + conditions, 11)
    tool, limit, extra = "#2f6fb3", "#b0b0b0", "#7aa6d6"
    group("Bookings per second: booking-cli against pgbench -M prepared on the same SQL (median)", "/s", [
        (r["strategy"], [(f"booking-cli (×{r['ratio']:.2f})", r["tool_bookings_per_sec"], tool),
                         ("pgbench", r["pgbench_tps"], limit)]) for r in rows])
    group("Lock acquire + release pairs per second: booking-cli against redis-benchmark (median)", "/s", [
        ("lock", [(f"booking-cli, the default (×{lock_result['ratio_to_p16']:.2f} of -P 16)",
                   lock_result["booking_cli_pairs_per_sec_default"], tool),
                  (f"booking-cli, {lock_result['per_core_threads']} threads",
                   lock_result["booking_cli_pairs_per_sec_per_core_threads"], extra),
                  (f"booking-cli, {lock_result['tasks_4x']} tasks",
                   lock_result["booking_cli_pairs_per_sec_default_4x_tasks"], extra),
                  ("redis-benchmark -P 1", lock_result["redis_benchmark_pairs_per_sec_p1"], limit),
                  ("redis-benchmark -P 16", lock_result["redis_benchmark_pairs_per_sec_p16"], "#808080")])])
    if hot_result and hot_result.get("hold_0"):
        zero = hot_result["hold_0"]
        cold = hot_result.get("flash_sale", {}).get("cold_one_statement_per_sec")
        items = [(r["strategy"], [(f"booking-cli (×{r['ratio'] or 0:.2f})", r["tool"], tool),
                                  ("pgbench", r.get("pgbench") or 0, limit)]) for r in zero]
        if cold:
            items.append(("uncontended", [("one-statement on 1,000 slots", cold, extra)]))
        group("One hot room-night, 100 users on 32 lanes, hold 0: bookings per second against pgbench on the same row", "/s", items)
    height = y
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n")


def main():
    settings = {"users": int(sys.argv[1]), "seconds": int(sys.argv[2]), "runs": int(sys.argv[3])}
    rows = strategies(settings)
    histograms(rows)
    ceiling_result = ceiling()
    lock_result = lock()
    reference_result = reference()
    reserve_result = reserve_reference()
    scale_result = scale()
    http_result = http()
    hot_result = hot()
    cluster_result = cluster()
    (OUT / "bench.json").write_text(json.dumps({
        **settings, "strategies": rows, "single_statement_ceiling": ceiling_result, "lock": lock_result,
        "reference_run": reference_result, "reserve_reference_run": reserve_result, "scale": scale_result,
        "http": http_result, "hot_slot": hot_result,
        "cluster": cluster_result}, indent=2) + "\n")
    (OUT / "throughput.svg").write_text(svg(rows, lock_result, settings, hot_result))
    print()
    print(f"written: {OUT / 'bench.json'}, {OUT / 'throughput.svg'}")


if __name__ == "__main__":
    main()
