//! The figures the gateway is held to, and whether a run met them.

use crate::figures::{mib, mib_text, signed_ms, thousands};
use crate::results::{FirstTokenResults, MemoryResults, Results, UnaryResults};
use crate::stats::difference_ms;

pub const ADDED_P99_LIMIT_MS: f64 = 1.0;
pub const FIRST_TOKEN_OVERHEAD_LIMIT_MS: f64 = 1.0;
pub const HELD_STREAMS: usize = 10_000;
pub const HELD_STREAMS_RSS_LIMIT_MIB: f64 = 150.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Met (or missed) only by extrapolating from a smaller measurement.
    ProjectedPass,
    ProjectedFail,
    NotMeasured,
}

impl Verdict {
    fn of(met: bool) -> Verdict {
        if met { Verdict::Pass } else { Verdict::Fail }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::ProjectedPass => "PASS (projected)",
            Verdict::ProjectedFail => "FAIL (projected)",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

fn added_latency(unary: &UnaryResults) -> Option<TargetRow> {
    let direct = unary.open_direct.latency?;
    let gateway = unary.open_gateway.latency?;
    let added_p99 = difference_ms(gateway.p99, direct.p99);
    let errors = unary.open_gateway.errors + unary.open_direct.errors;
    let mut measured = format!(
        "{} ms (p50 {} ms)",
        signed_ms(added_p99),
        signed_ms(difference_ms(gateway.p50, direct.p50))
    );
    if errors > 0 {
        measured.push_str(&format!(", {} errors", thousands(errors as u64)));
    }
    Some(TargetRow {
        target: format!(
            "p99 added latency < {ADDED_P99_LIMIT_MS} ms at {} req/s (non-streaming)",
            thousands(unary.rate.round() as u64)
        ),
        measured,
        verdict: Verdict::of(added_p99 < ADDED_P99_LIMIT_MS && errors == 0),
    })
}

fn first_token_overhead(first_token: &FirstTokenResults) -> Option<TargetRow> {
    let direct = first_token.direct.latency?;
    let gateway = first_token.gateway.latency?;
    let overhead_p50 = difference_ms(gateway.p50, direct.p50);
    let errors = first_token.direct.errors + first_token.gateway.errors;
    Some(TargetRow {
        target: format!("TTFT overhead < {FIRST_TOKEN_OVERHEAD_LIMIT_MS} ms (p50)"),
        measured: format!(
            "{} ms (p99 {} ms)",
            signed_ms(overhead_p50),
            signed_ms(difference_ms(gateway.p99, direct.p99))
        ),
        verdict: Verdict::of(overhead_p50 < FIRST_TOKEN_OVERHEAD_LIMIT_MS && errors == 0),
    })
}

fn held_streams_memory(memory: &MemoryResults) -> TargetRow {
    let target = format!(
        "{} concurrent streams under {HELD_STREAMS_RSS_LIMIT_MIB} MiB RSS",
        thousands(HELD_STREAMS as u64)
    );
    let level = memory
        .levels
        .iter()
        .find(|level| level.requested == HELD_STREAMS);
    let Some((level, reading)) = level.and_then(|level| Some((level, level.outcome.memory?)))
    else {
        return TargetRow {
            target,
            measured: "no reading at this level".into(),
            verdict: Verdict::NotMeasured,
        };
    };
    let outcome = &level.outcome;
    let all_completed = outcome.errors == 0 && outcome.completed == outcome.streams;
    if level.capped_because.is_none() {
        return TargetRow {
            target,
            measured: format!(
                "{} MiB VmRSS with {} streams open; {} of {} completed",
                mib_text(reading.rss_kib),
                thousands(outcome.open_at_reading as u64),
                thousands(outcome.completed as u64),
                thousands(outcome.streams as u64)
            ),
            verdict: Verdict::of(
                mib(reading.rss_kib) < HELD_STREAMS_RSS_LIMIT_MIB && all_completed,
            ),
        };
    }
    let Some(per_stream_kib) = memory.marginal_kib_per_stream() else {
        return TargetRow {
            target,
            measured: format!(
                "{} MiB VmRSS with only {} streams open",
                mib_text(reading.rss_kib),
                thousands(outcome.open_at_reading as u64)
            ),
            verdict: Verdict::NotMeasured,
        };
    };
    let missing = (HELD_STREAMS - outcome.open_at_reading) as f64;
    let projected_kib = reading.rss_kib as f64 + missing * per_stream_kib;
    let met = projected_kib / 1024.0 < HELD_STREAMS_RSS_LIMIT_MIB && all_completed;
    TargetRow {
        target,
        measured: format!(
            "{:.1} MiB projected from {} MiB VmRSS at {} open streams (+{:.1} KiB per stream)",
            projected_kib / 1024.0,
            mib_text(reading.rss_kib),
            thousands(outcome.open_at_reading as u64),
            per_stream_kib
        ),
        verdict: if met {
            Verdict::ProjectedPass
        } else {
            Verdict::ProjectedFail
        },
    }
}

pub fn evaluate(results: &Results) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    if let Some(row) = results.unary.as_ref().and_then(added_latency) {
        rows.push(row);
    }
    if let Some(row) = results.first_token.as_ref().and_then(first_token_overhead) {
        rows.push(row);
    }
    if let Some(memory) = &results.memory {
        rows.push(held_streams_memory(memory));
    }
    rows
}
