//! `stress --report FILE.html`: one self-contained page — no external script, font, style or
//! image; readable offline — with the outcomes, the final state read from the database, the
//! verdicts, each strategy's latency histogram and swimlanes as inline SVG, and for
//! `--mode all` the comparison. Light and dark follow `prefers-color-scheme`; the tables scroll
//! and the drawings scale, so it reads at 1280×800 and at phone width.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::text::stress::{OUTCOME_ROWS, night_state};
use super::{expectation_word, totals};
use crate::run::StressReport;
use crate::timeline::{self, Track};

const STYLE: &str = "
:root { --bg: #ffffff; --fg: #1d1d1f; --muted: #6b6b70; --line: #d9d9de; --card: #f6f6f8;
        --begin: #c9c9cf; --lock: #e0a800; --check: #1f8fb8; --work: #a8b3c4; --write: #9b4fb8;
        --commit: #2e9d4f; --retry: #d46a00; --request: #1f8fb8; --response: #2e9d4f;
        --bad: #d1242f; --good: #2e9d4f; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #141416; --fg: #ececf0; --muted: #9a9aa3; --line: #34343a; --card: #1e1e22;
          --begin: #55555d; --work: #4d5566; --bad: #ff5c5c; --good: #4cc46e; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 1rem; background: var(--bg); color: var(--fg);
       font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; }
main { max-width: 1240px; margin: 0 auto; }
h1 { font-size: 1.1rem; margin: 0 0 .25rem; color: var(--muted); font-weight: 600; }
h1, h2, p { overflow-wrap: anywhere; }
.headline { font-size: 1.5rem; line-height: 1.25; margin: .2rem 0 .4rem; }
h2 { font-size: 1.15rem; margin: 1.75rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; color: var(--muted); }
p { margin: .3rem 0; }
.muted { color: var(--muted); }
td.left, th.left { text-align: left; }
.scroll { overflow-x: auto; max-width: 100%; }
.hist { font-variant-numeric: tabular-nums; max-width: 44rem; }
.hrow { display: flex; align-items: center; gap: .5rem; margin: .1rem 0; }
.hlabel { flex: 0 0 10.5em; text-align: right; color: var(--muted); white-space: nowrap; }
.hbar { height: .85em; background: var(--check); border-radius: 2px; min-width: 1px; }
.chart { height: 160px; width: 100%; }
.chart .step { fill: none; stroke: var(--check); stroke-width: 2; }
.chart .inv { stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 5 4; }
.chart .cross { stroke: var(--bad); stroke-width: 2; stroke-dasharray: 4 3; }
.lanes { min-width: 760px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .45rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { font-weight: 600; }
section { background: var(--card); border-radius: 10px; padding: .75rem 1rem 1rem; margin: 1rem 0; }
.bad { color: var(--bad); font-weight: 600; }
.good { color: var(--good); font-weight: 600; }
svg { width: 100%; height: auto; display: block; }
svg text { fill: var(--fg); font-size: 11px; }
.legend span { display: inline-block; margin-right: .9rem; white-space: nowrap; }
.legend i { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .3rem;
            vertical-align: -1px; }
.p-begin { fill: var(--begin); background: var(--begin); } .p-lock { fill: var(--lock); background: var(--lock); }
.p-check { fill: var(--check); background: var(--check); } .p-work { fill: var(--work); background: var(--work); }
.p-write { fill: var(--write); background: var(--write); } .p-commit { fill: var(--commit); background: var(--commit); }
.p-retry { fill: var(--retry); background: var(--retry); } .p-request { fill: var(--request); background: var(--request); }
.p-response { fill: var(--response); background: var(--response); }
.bar { fill: var(--check); } .refused { stroke: var(--bad); stroke-width: 2; }
.over { stroke: var(--bad); stroke-width: 2; stroke-dasharray: 4 3; }
.axis { stroke: var(--line); }
";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn verdict_class(verdict: &str) -> &'static str {
    if verdict == "SAFE" { "good" } else { "bad" }
}

/// Whether an expectation held, as its cell's class and word.
fn met_cell(met: bool) -> (&'static str, &'static str) {
    if met {
        ("good", "met")
    } else {
        ("bad", "NOT met")
    }
}

/// The page's head, and its title as a heading.
fn open_page(page: &mut String, title: &str) {
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main><h1>{}</h1>",
        escape(title),
        escape(title)
    );
}

/// The whole page, one section per strategy.
pub fn write_html(out: &mut impl Write, reports: &[StressReport]) -> io::Result<()> {
    let mut page = String::new();
    let title = match reports {
        [one] => format!("booking-cli stress --mode {}", one.config.mode),
        _ => "booking-cli stress --mode all".to_owned(),
    };
    open_page(&mut page, &title);
    if let Some(first) = reports.first() {
        let _ = write!(
            page,
            "<p class=\"muted\">{} — every verdict read from PostgreSQL after the run.</p>",
            escape(&super::race_summary(&first.config))
        );
    }
    if reports.len() > 1 {
        comparison(&mut page, reports);
    }
    for report in reports {
        strategy_section(&mut page, report);
    }
    page.push_str(
        "<p class=\"muted\">Generated by booking-cli. Phases are measured at the strategies' own step boundaries.</p></main></body></html>\n",
    );
    out.write_all(page.as_bytes())
}

/// `interleave --report`: the counts of every strategy's orderings, and each transcript shown.
pub fn write_interleave_html(
    out: &mut impl Write,
    summaries: &[crate::interleave::Summary],
    slot: &str,
) -> io::Result<()> {
    let mut page = String::new();
    let title = match summaries {
        [one] => format!("booking-cli interleave --mode {}", one.mode),
        _ => "booking-cli interleave --mode all".to_owned(),
    };
    open_page(&mut page, &title);
    let _ = write!(
        page,
        "<p class=\"muted\">{} users on {}; every ordering of their steps run step by step through the strategies' own code, each judged from PostgreSQL.</p>",
        summaries.first().map_or(2, |s| s.users),
        escape(slot)
    );
    page.push_str("<div class=\"scroll\"><table><tr><th>strategy</th><th class=\"left\">steps</th><th>orderings</th><th>overbooked</th><th>lost update</th><th>under-sold</th><th>blocked</th><th>aborted</th><th>errors</th><th>expected</th></tr>");
    for s in summaries {
        let (met_class, met_word) = met_cell(s.met);
        let _ = write!(
            page,
            "<tr><td><a href=\"#{m}\">{m}</a></td><td class=\"left\">{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&s.mode.steps().join(" ")),
            s.orderings,
            if s.overbooked > 0 { "bad" } else { "good" },
            s.overbooked,
            s.lost_update,
            s.under_sold,
            s.blocked,
            s.aborted,
            s.errors,
            met_class,
            met_word,
            m = s.mode
        );
    }
    page.push_str("</table></div>");
    for s in summaries {
        let _ = write!(
            page,
            "<section id=\"{m}\"><h2>{m}</h2><p>{}</p>",
            escape(s.mode.spec().summary),
            m = s.mode
        );
        if let Some(transcript) = &s.transcript {
            let mut text = Vec::new();
            super::text::interleave::write_transcript(&mut text, transcript)?;
            let _ = write!(
                page,
                "<div class=\"scroll\"><pre>{}</pre></div>",
                escape(&String::from_utf8_lossy(&text))
            );
        } else {
            page.push_str("<p class=\"muted\">No ordering overbooked and none blocked.</p>");
        }
        page.push_str("</section>");
    }
    page.push_str("<p class=\"muted\">Generated by booking-cli.</p></main></body></html>\n");
    out.write_all(page.as_bytes())
}

fn comparison(page: &mut String, reports: &[StressReport]) {
    page.push_str("<h2>Every strategy</h2><div class=\"scroll\"><table><tr><th>strategy</th><th>created</th><th>refused</th><th>errors</th><th>booked_count</th><th>confirmed</th><th>verdict</th><th>p50 ms</th><th>p95 ms</th><th>max ms</th><th>expected</th></tr>");
    for r in reports {
        let t = &r.tally;
        let refused = t.refused();
        let (booked, confirmed) = totals(&r.nights);
        let l = r.latency.summary();
        let verdict = r.verdict();
        let (met_class, met_word) = met_cell(r.expectation_met());
        let _ = write!(
            page,
            "<tr><td><a href=\"#{m}\">{m}</a></td><td>{}</td><td>{refused}</td><td>{}</td><td>{booked}</td><td>{confirmed}</td><td class=\"{}\">{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td class=\"{}\">{}</td></tr>",
            t.successes(),
            t.error_count(),
            verdict_class(&verdict),
            escape(&verdict),
            l.p50_ms,
            l.p95_ms,
            l.max_ms,
            met_class,
            met_word,
            m = r.config.mode
        );
    }
    page.push_str("</table></div>");
}

/// The verdict as a sentence about the headline night, read from the database: "Room 1 on
/// 2024-12-25 was sold 8 times; it had 1 room."
fn headline(r: &StressReport) -> String {
    let Some(night) = r.headline_night() else {
        return r.verdict();
    };
    let sold = i64::from(night.booked_count).max(night.confirmed_bookings);
    let times = match sold {
        0 => "was not sold".to_owned(),
        1 => "was sold once".to_owned(),
        n => format!("was sold {n} times"),
    };
    let rooms = match night.total_inventory {
        1 => "1 room".to_owned(),
        n => format!("{n} rooms"),
    };
    let mut sentence = format!(
        "Room {} on {} {times}; it had {rooms}.",
        night.room, night.night
    );
    if let Some(why) = r.shortfall() {
        sentence.push_str(&format!(" Under-sold: {why}."));
    }
    sentence
}

fn strategy_section(page: &mut String, r: &StressReport) {
    let t = &r.tally;
    let verdict = r.verdict();
    let (met_class, met_word) = met_cell(r.expectation_met());
    let _ = write!(
        page,
        "<section id=\"{m}\"><h2>{m}</h2><p class=\"headline {}\">{}</p><p>Verdict: <span class=\"{}\">{}</span> — expected {}: <span class=\"{}\">{}</span></p><p class=\"muted\">{}</p>",
        verdict_class(&verdict),
        escape(&headline(r)),
        verdict_class(&verdict),
        escape(&verdict),
        expectation_word(r.config.expect),
        met_class,
        met_word,
        escape(r.config.mode.spec().summary),
        m = r.config.mode
    );
    page.push_str(
        "<h3>Outcomes</h3><div class=\"scroll\"><table><tr><th>outcome</th><th>users</th></tr>",
    );
    for row in OUTCOME_ROWS {
        let count = row.count(t);
        if count > 0 || row.kinds.contains(&"created") {
            let _ = write!(page, "<tr><td>{}</td><td>{count}</td></tr>", row.label);
        }
    }
    for (message, count) in &t.errors {
        let _ = write!(
            page,
            "<tr><td class=\"bad\">500 {}</td><td>{count}</td></tr>",
            escape(message)
        );
    }
    page.push_str("</table></div>");
    page.push_str("<h3>Final state, read from PostgreSQL</h3><div class=\"scroll\"><table><tr><th>night</th><th>total_inventory</th><th>booked_count</th><th>confirmed</th><th>on hold</th><th>state</th></tr>");
    for n in r.nights.iter().take(50) {
        let state = night_state(n);
        let _ = write!(
            page,
            "<tr><td>room {}, {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            n.room,
            n.night,
            n.total_inventory,
            n.booked_count,
            n.confirmed_bookings,
            n.held_bookings,
            verdict_class(&state),
            escape(&state)
        );
    }
    page.push_str("</table></div>");
    if !r.tracks.is_empty() {
        bookings_over_time(page, &r.tracks, r.config.inventory);
    }
    histogram(page, r);
    if !r.tracks.is_empty() {
        swimlanes(page, &r.tracks, r.config.inventory);
    }
    page.push_str("</section>");
}

/// Users per latency band, eight bands up to p99 and the tail: HTML bars, so that the labels
/// are body text at every width (an SVG's text scales with the drawing).
fn histogram(page: &mut String, r: &StressReport) {
    let bins = r.latency.bins_to_p99(8);
    let peak = bins.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let l = r.latency.summary();
    let _ = write!(
        page,
        "<h3>Latency per user: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms</h3><div class=\"hist\" role=\"img\" aria-label=\"latency histogram\">",
        l.p50_ms, l.p95_ms, l.max_ms
    );
    let mut lower = 0.0;
    for (upper, count) in &bins {
        let share = (*count as f64 / peak as f64) * 70.0;
        let _ = write!(
            page,
            "<div class=\"hrow\"><span class=\"hlabel\">{lower:.1}–{upper:.1} ms</span><span class=\"hbar\" style=\"width:{share:.1}%\"></span><span>{count}</span></div>"
        );
        lower = *upper;
    }
    page.push_str("</div>");
}

/// Bookings committed over time, against the inventory: the line the race crossed, and when.
/// The drawing stretches to the width; its words are HTML around it, body text at every width.
fn bookings_over_time(page: &mut String, tracks: &[Track], inventory: i32) {
    let points = timeline::created_over_time(tracks);
    let span = timeline::span(tracks).as_micros().max(1) as f64;
    let most = points
        .last()
        .map_or(0, |p| p.1)
        .max(u64::try_from(inventory).unwrap_or(0))
        .max(1) as f64;
    let (width, height) = (1000.0, 160.0);
    let x = |us: u64| us as f64 / span * width;
    // Headroom above the highest of bookings and inventory.
    let y = |n: f64| height - 8.0 - n / (most * 1.1) * (height - 16.0);
    let crossed = timeline::overbooked_at(tracks, inventory);
    let _ = write!(
        page,
        "<h3>Bookings committed over time</h3><svg class=\"chart\" viewBox=\"0 0 {width} {height}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"bookings committed over time against the inventory\">"
    );
    let inv = y(f64::from(inventory));
    let _ = write!(
        page,
        "<line class=\"inv\" x1=\"0\" y1=\"{inv:.1}\" x2=\"{width}\" y2=\"{inv:.1}\" vector-effect=\"non-scaling-stroke\"/>"
    );
    let mut path = format!("M0 {:.1}", y(0.0));
    for (at, n) in &points {
        let _ = write!(path, " H{:.1} V{:.1}", x(*at), y(*n as f64));
    }
    let _ = write!(path, " H{width}");
    let _ = write!(
        page,
        "<path class=\"step\" d=\"{path}\" vector-effect=\"non-scaling-stroke\"/>"
    );
    if let Some(at) = crossed {
        let _ = write!(
            page,
            "<line class=\"cross\" x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{height}\" vector-effect=\"non-scaling-stroke\"/>",
            x(at)
        );
    }
    page.push_str("</svg>");
    let total = points.last().map_or(0, |p| p.1);
    let crossing = match crossed {
        Some(at) => format!(
            " The inventory was crossed at {:.1} ms (dashed red): booking {} of {total} was one too many.",
            at as f64 / 1000.0,
            inventory.saturating_add(1)
        ),
        None => " The inventory was never crossed.".to_owned(),
    };
    let _ = write!(
        page,
        "<p class=\"muted\">0 → {:.1} ms. Blue: bookings committed so far ({total} in all); dashed grey: the inventory ({inventory}).{crossing}</p>",
        span / 1000.0
    );
}

/// One lane per user: each phase a coloured bar, a refusal a red tick, the moment the slot
/// became overbooked a dashed red line.
fn swimlanes(page: &mut String, tracks: &[Track], inventory: i32) {
    let mut sorted: Vec<&Track> = tracks.iter().collect();
    sorted.sort_by_key(|t| (t.start_us, t.end_us));
    let span = timeline::span(tracks).as_micros().max(1) as f64;
    let (label, plot, lane) = (80.0, 880.0, 14.0);
    let height = lane * sorted.len() as f64 + 24.0;
    let x = |us: u64| label + us as f64 / span * plot;
    let _ = write!(
        page,
        "<h3>Swimlanes: {} users, 0 → {:.1} ms</h3><div class=\"scroll\"><svg class=\"lanes\" viewBox=\"0 0 {} {height}\" role=\"img\" aria-label=\"swimlanes\">",
        sorted.len(),
        span / 1000.0,
        label + plot + 40.0
    );
    for (i, track) in sorted.iter().enumerate() {
        let y = i as f64 * lane;
        let id = track.user.to_string();
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 10.0,
            &id[..8.min(id.len())]
        );
        for phase in &track.phases {
            let _ = write!(
                page,
                "<rect class=\"p-{}\" x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\"><title>{} {:.2} ms</title></rect>",
                phase.name,
                x(phase.start_us),
                y + 2.0,
                (x(phase.end_us) - x(phase.start_us)).max(0.5),
                lane - 4.0,
                phase.name,
                (phase.end_us - phase.start_us) as f64 / 1000.0
            );
        }
        if track.outcome != "created" {
            let end = x(track.end_us);
            let _ = write!(
                page,
                "<line class=\"refused\" x1=\"{end:.2}\" y1=\"{:.1}\" x2=\"{end:.2}\" y2=\"{:.1}\"/>",
                y + 1.0,
                y + lane - 1.0
            );
        }
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label + plot + 6.0,
            y + 10.0,
            track.status
        );
    }
    let bottom = lane * sorted.len() as f64;
    let _ = write!(
        page,
        "<line class=\"axis\" x1=\"{label}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\"/><text x=\"{label}\" y=\"{:.1}\">0 ms</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1} ms</text>",
        label + plot,
        bottom + 14.0,
        label + plot,
        bottom + 14.0,
        span / 1000.0
    );
    if let Some(at) = timeline::overbooked_at(tracks, inventory) {
        let _ = write!(
            page,
            "<line class=\"over\" x1=\"{0:.2}\" y1=\"0\" x2=\"{0:.2}\" y2=\"{bottom:.1}\"><title>overbooked: the first commit beyond the inventory</title></line>",
            x(at)
        );
    }
    page.push_str("</svg></div><p class=\"legend\">");
    for (class, name) in [
        ("begin", "begin"),
        ("lock", "lock wait"),
        ("check", "check"),
        ("work", "slow work"),
        ("write", "write"),
        ("commit", "commit"),
        ("retry", "retry"),
    ] {
        let _ = write!(page, "<span><i class=\"p-{class}\"></i>{name}</span>");
    }
    page.push_str("<span>red tick: refused</span><span>dashed red line: overbooked</span></p>");
}
