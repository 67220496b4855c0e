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
    let run = unary.open_runs.first()?;
    let direct = run.direct.latency?;
    let gateway = run.gateway.latency?;
    let added_p99 = difference_ms(gateway.p99, direct.p99);
    let errors = run.gateway.errors + run.direct.errors;
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
            thousands(run.rate.round() as u64)
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

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::first_token::FirstTokenOutcome;
    use crate::held_streams::HoldOutcome;
    use crate::load::LoadOutcome;
    use crate::procfs::MemoryReading;
    use crate::results::{LevelResult, OpenLoopRun};
    use crate::stats::LatencySummary;

    fn latency(p50_us: u64, p99_us: u64) -> Option<LatencySummary> {
        Some(LatencySummary {
            count: 100,
            p50: Duration::from_micros(p50_us),
            p90: Duration::from_micros((p50_us + p99_us) / 2),
            p99: Duration::from_micros(p99_us),
            max: Duration::from_micros(p99_us * 2),
        })
    }

    fn load(p50_us: u64, p99_us: u64) -> LoadOutcome {
        LoadOutcome {
            errors: 0,
            first_error: None,
            achieved_rate: 5000.0,
            latency: latency(p50_us, p99_us),
            successes: 50_000,
            cpu: Vec::new(),
        }
    }

    fn level(requested: usize, open: usize, rss_mib: u64, capped: bool) -> LevelResult {
        LevelResult {
            requested,
            capped_because: capped.then(|| "the open-file limit".to_owned()),
            outcome: HoldOutcome {
                streams: open,
                ramp_up: Duration::from_secs(5),
                open_at_reading: open,
                memory: Some(MemoryReading {
                    rss_kib: rss_mib * 1024,
                    peak_rss_kib: rss_mib * 1024,
                }),
                open_files: Some(open * 2),
                completed: open,
                errors: 0,
                first_error: None,
            },
        }
    }

    pub(crate) fn sample_results(levels: Vec<LevelResult>) -> Results {
        Results {
            unary: Some(UnaryResults {
                connections: 256,
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(10),
                open_runs: vec![
                    OpenLoopRun {
                        rate: 5000.0,
                        direct: load(300, 800),
                        gateway: load(700, 1500),
                    },
                    OpenLoopRun {
                        rate: 2500.0,
                        direct: load(250, 600),
                        gateway: load(500, 900),
                    },
                ],
                closed_connections: 64,
                closed_duration: Duration::from_secs(5),
                closed_direct: load(1000, 3000),
                closed_gateway: load(5000, 9000),
                mix: Some(OpenLoopRun {
                    rate: 2500.0,
                    direct: load(280, 700),
                    gateway: load(640, 1200),
                }),
            }),
            first_token: Some(FirstTokenResults {
                concurrency: 8,
                duration: Duration::from_secs(5),
                direct: FirstTokenOutcome {
                    streams: 1000,
                    errors: 0,
                    first_error: None,
                    latency: latency(500, 900),
                },
                gateway: FirstTokenOutcome {
                    streams: 900,
                    errors: 0,
                    first_error: None,
                    latency: latency(1200, 2500),
                },
            }),
            memory: Some(MemoryResults {
                prompt: "[[emu:words=30]]".into(),
                open_rate: 2000.0,
                idle: None,
                idle_open_files: None,
                levels,
            }),
        }
    }

    #[test]
    fn verdicts_compare_with_the_limits() {
        let results = sample_results(vec![
            level(1000, 1000, 40, false),
            level(10_000, 10_000, 140, false),
        ]);
        let rows = evaluate(&results);
        assert_eq!(rows.len(), 3);
        // +0.7 ms added at p99, +0.7 ms first-token overhead at p50, 140 MiB.
        assert_eq!(rows[0].verdict, Verdict::Pass);
        assert!(rows[0].measured.starts_with("+0.700 ms"));
        assert_eq!(rows[1].verdict, Verdict::Pass);
        assert_eq!(rows[2].verdict, Verdict::Pass);
    }

    #[test]
    fn a_capped_level_is_judged_by_projection() {
        // The 100 streams that could not be opened are added at the marginal cost between
        // the two levels: about 9 KiB each from 120 MiB, about 12.5 KiB each from 149 MiB.
        let results = sample_results(vec![
            level(1000, 1000, 40, false),
            level(10_000, 9_900, 120, true),
        ]);
        let memory = results.memory.as_ref().unwrap();
        let per_stream = memory.marginal_kib_per_stream().unwrap();
        assert!((per_stream - 80.0 * 1024.0 / 8900.0).abs() < 1e-6);
        let row = held_streams_memory(memory);
        assert_eq!(row.verdict, Verdict::ProjectedPass);
        assert!(row.measured.contains("projected"));

        let over = sample_results(vec![
            level(1000, 1000, 40, false),
            level(10_000, 9_900, 149, true),
        ]);
        let row = held_streams_memory(over.memory.as_ref().unwrap());
        assert_eq!(row.verdict, Verdict::ProjectedFail);
    }

    #[test]
    fn a_missing_level_is_not_measured() {
        let results = sample_results(vec![level(1000, 1000, 40, false)]);
        let row = held_streams_memory(results.memory.as_ref().unwrap());
        assert_eq!(row.verdict, Verdict::NotMeasured);
    }
}
