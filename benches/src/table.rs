//! The Markdown table: one row per measure, Clove beside the raw echo, their ratio and the target.

use std::fmt::Write;
use std::time::Duration;

use crate::memory::Footprint;
use crate::roundtrip::Latency;

/// What a run measured, for both servers (`[clove, raw]`).
pub struct Results {
    pub latency: [Latency; 2],
    pub pipelined_one: [f64; 2],
    pub pipelined_four: [f64; 2],
    /// Four connections, the client writing each frame on its own: bound by the client's writes.
    pub per_frame_four: [f64; 2],
    pub memory: Footprint,
}

/// Targets: Clove's round trip at most 1.2× raw, pipelined at least 0.9× raw, idle at most 4 MiB.
const ROUND_TRIP_MAX: f64 = 1.2;
const PIPELINED_MIN: f64 = 0.9;
const IDLE_MAX_MIB: f64 = 4.0;

pub fn render(heading: &str, r: &Results) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let [c, raw] = r.latency;
    rows.push(latency_row("NOOP round trip p50", c.p50, raw.p50, Some(ROUND_TRIP_MAX)));
    rows.push(latency_row("NOOP round trip p99", c.p99, raw.p99, None));
    rows.push(throughput_row("pipelined, 1 connection", r.pipelined_one, true));
    rows.push(throughput_row("pipelined, 4 connections", r.pipelined_four, true));
    rows.push(throughput_row("pipelined, 4 connections, one write per frame", r.per_frame_four, false));
    let idle = mib(r.memory.idle_kib);
    rows.push([
        "runtime RSS added, idle with listener".into(),
        format!("{idle:.1} MiB"),
        "—".into(),
        "—".into(),
        verdict(format!("≤ {IDLE_MAX_MIB:.0} MiB"), idle <= IDLE_MAX_MIB),
    ]);
    rows.push([
        format!("runtime RSS added, {} agents", r.memory.agents),
        format!("{:.1} MiB", mib(r.memory.with_agents_kib)),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);

    let mut out = String::new();
    let _ = writeln!(out, "## {heading}\n");
    let _ = writeln!(out, "| measure | Clove | raw echo | ratio | target |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nRSS still added after the runtime was dropped: {:.1} MiB (allocator caches).",
        mib(r.memory.after_drop_kib)
    );
    out
}

fn latency_row(name: &str, clove: Duration, raw: Duration, max: Option<f64>) -> [String; 5] {
    let ratio = clove.as_secs_f64() / raw.as_secs_f64().max(f64::MIN_POSITIVE);
    let target = match max {
        Some(max) => verdict(format!("≤ {max:.1}×"), ratio <= max),
        None => "—".into(),
    };
    [name.into(), micros(clove), micros(raw), format!("{ratio:.2}×"), target]
}

fn throughput_row(name: &str, [clove, raw]: [f64; 2], has_target: bool) -> [String; 5] {
    let ratio = clove / raw.max(f64::MIN_POSITIVE);
    let target =
        if has_target { verdict(format!("≥ {PIPELINED_MIN:.1}×"), ratio >= PIPELINED_MIN) } else { "—".into() };
    [name.into(), rate(clove), rate(raw), format!("{ratio:.2}×"), target]
}

fn verdict(target: String, met: bool) -> String {
    format!("{target} {}", if met { "(met)" } else { "(missed)" })
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn rate(per_second: f64) -> String {
    format!("{:.2} M req/s", per_second / 1e6)
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}
