//! The results as Markdown tables.

use std::fmt::Write;

use crate::figures::{mib_text, ms, rate, signed_ms, thousands};
use crate::first_token::FirstTokenOutcome;
use crate::load::LoadOutcome;
use crate::results::{FirstTokenResults, MemoryResults, OpenLoopRun, Results, UnaryResults};
use crate::stats::{LatencySummary, difference_ms};
use crate::targets;

const LATENCY_HEADER: &str = "p50 ms | p90 ms | p99 ms | max ms";

fn latency_cells(latency: Option<LatencySummary>) -> String {
    match latency {
        Some(l) => format!(
            "{} | {} | {} | {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        ),
        None => "- | - | - | -".to_owned(),
    }
}

fn difference_cells(direct: Option<LatencySummary>, gateway: Option<LatencySummary>) -> String {
    match (direct, gateway) {
        (Some(d), Some(g)) => format!(
            "**{}** | {} | **{}** |",
            signed_ms(difference_ms(g.p50, d.p50)),
            signed_ms(difference_ms(g.p90, d.p90)),
            signed_ms(difference_ms(g.p99, d.p99))
        ),
        _ => "- | - | - |".to_owned(),
    }
}

fn load_row(out: &mut String, path: &str, outcome: &LoadOutcome) {
    let _ = writeln!(
        out,
        "| {path} | {} | {} | {} |",
        rate(outcome.achieved_rate),
        latency_cells(outcome.latency),
        thousands(outcome.errors as u64)
    );
}

fn error_notes(out: &mut String, cases: &[(String, &Option<String>)]) {
    for (path, first_error) in cases {
        if let Some(error) = first_error {
            let _ = writeln!(out, "\nFirst error ({path}): `{error}`");
        }
    }
}

const DIRECT_UNARY: &str = "Emulator directly (signed `POST /model/{id}/converse`)";
const GATEWAY_UNARY: &str = "Through the gateway (`POST /v1/chat/completions`)";
const DIRECT_MIX: &str = "Emulator directly (Converse with `toolConfig` and an `image` block)";
const GATEWAY_MIX: &str = "Through the gateway (`tools` and an `image_url` data URL)";

fn mix_section(out: &mut String, unary: &UnaryResults, run: &OpenLoopRun) {
    let _ = writeln!(
        out,
        "\n### Non-streaming Converse with tools and an image, open loop\n"
    );
    let _ = writeln!(
        out,
        "The same prompt with three tool definitions and a 1x1 png (as a `data:` URL through the \
         gateway, as image bytes directly), {} s at the offered rate over {} connections.\n",
        unary.duration.as_secs_f64(),
        thousands(unary.connections as u64)
    );
    let _ = writeln!(
        out,
        "| Offered req/s | Path | Achieved req/s | {LATENCY_HEADER} | Errors |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    let offered = rate(run.rate);
    load_row(out, &format!("{offered} | {DIRECT_MIX}"), &run.direct);
    load_row(out, &format!("{offered} | {GATEWAY_MIX}"), &run.gateway);
    let _ = writeln!(
        out,
        "| {offered} | **Added by the gateway** | | {} | |",
        difference_cells(run.direct.latency, run.gateway.latency)
    );
}

fn unary_section(out: &mut String, unary: &UnaryResults) {
    let _ = writeln!(out, "### Non-streaming Converse, open loop\n");
    let _ = writeln!(
        out,
        "Each offered rate for {} s (after {} s of warm-up) over {} keep-alive connections.\n",
        unary.duration.as_secs_f64(),
        unary.warmup.as_secs_f64(),
        thousands(unary.connections as u64)
    );
    let _ = writeln!(
        out,
        "| Offered req/s | Path | Achieved req/s | {LATENCY_HEADER} | Errors |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for run in &unary.open_runs {
        let offered = rate(run.rate);
        load_row(out, &format!("{offered} | {DIRECT_UNARY}"), &run.direct);
        load_row(out, &format!("{offered} | {GATEWAY_UNARY}"), &run.gateway);
        let _ = writeln!(
            out,
            "| {offered} | **Added by the gateway** | | {} | |",
            difference_cells(run.direct.latency, run.gateway.latency)
        );
    }

    let _ = writeln!(
        out,
        "\n### Non-streaming Converse, closed loop (maximum throughput)\n"
    );
    let _ = writeln!(
        out,
        "{} connections each sending the next request as soon as the previous reply arrived, for {} s.\n",
        thousands(unary.closed_connections as u64),
        unary.closed_duration.as_secs_f64()
    );
    let _ = writeln!(out, "| Path | req/s | {LATENCY_HEADER} | Errors |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    load_row(out, DIRECT_UNARY, &unary.closed_direct);
    load_row(out, GATEWAY_UNARY, &unary.closed_gateway);

    let mut runs: Vec<(String, &LoadOutcome)> = Vec::new();
    for run in &unary.open_runs {
        let offered = rate(run.rate);
        runs.push((
            format!("Open loop at {offered} req/s, directly"),
            &run.direct,
        ));
        runs.push((
            format!("Open loop at {offered} req/s, through the gateway"),
            &run.gateway,
        ));
    }
    runs.push(("Closed loop, directly".to_owned(), &unary.closed_direct));
    runs.push((
        "Closed loop, through the gateway".to_owned(),
        &unary.closed_gateway,
    ));
    if let Some(mix) = &unary.mix {
        mix_section(out, unary, mix);
        let offered = rate(mix.rate);
        runs.push((
            format!("Tools and an image at {offered} req/s, directly"),
            &mix.direct,
        ));
        runs.push((
            format!("Tools and an image at {offered} req/s, through the gateway"),
            &mix.gateway,
        ));
    }
    cpu_table(out, &runs);
    let errors: Vec<(String, &Option<String>)> = runs
        .iter()
        .map(|(run, outcome)| (run.to_lowercase(), &outcome.first_error))
        .collect();
    error_notes(out, &errors);
}

/// CPU each process used in each run: CPUs kept busy, and CPU time per successful reply.
fn cpu_table(out: &mut String, runs: &[(String, &LoadOutcome)]) {
    let mut labels: Vec<&str> = Vec::new();
    for (_, outcome) in runs {
        for share in &outcome.cpu {
            if !labels.contains(&share.label) {
                labels.push(share.label);
            }
        }
    }
    if labels.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nCPU used during each measured window, as CPUs kept busy (1.00 = one CPU) and CPU \
         time per successful reply. `whole machine` counts everything that ran, so what it \
         shows beyond the other columns was used by the kernel's softirq work or by other \
         processes:\n"
    );
    let _ = writeln!(out, "| Run | {} |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(labels.len()));
    for (run, outcome) in runs {
        let cells: Vec<String> = labels
            .iter()
            .map(|label| {
                outcome
                    .cpu
                    .iter()
                    .find(|share| share.label == *label)
                    .map_or("-".to_owned(), |share| {
                        let per_reply_us = if outcome.successes > 0 {
                            share.cpu.as_secs_f64() * 1e6 / outcome.successes as f64
                        } else {
                            0.0
                        };
                        format!("{:.2} ({per_reply_us:.0} µs)", share.cores)
                    })
            })
            .collect();
        let _ = writeln!(out, "| {run} | {} |", cells.join(" | "));
    }
}

fn first_token_row(out: &mut String, path: &str, outcome: &FirstTokenOutcome) {
    let _ = writeln!(
        out,
        "| {path} | {} | {} | {} |",
        thousands(outcome.streams as u64),
        latency_cells(outcome.latency),
        thousands(outcome.errors as u64)
    );
}

fn first_token_section(out: &mut String, first_token: &FirstTokenResults) {
    let _ = writeln!(out, "\n### Streaming time to first token\n");
    let _ = writeln!(
        out,
        "{} streams in flight for {} s. Time from sending the request to the first \
         `contentBlockDelta` frame (directly) or the first chunk with non-empty \
         `delta.content` (through the gateway).\n",
        first_token.concurrency,
        first_token.duration.as_secs_f64()
    );
    let _ = writeln!(out, "| Path | Streams | {LATENCY_HEADER} | Errors |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    first_token_row(
        out,
        "Emulator directly (signed `POST /model/{id}/converse-stream`)",
        &first_token.direct,
    );
    first_token_row(
        out,
        "Through the gateway (`stream: true`)",
        &first_token.gateway,
    );
    let _ = writeln!(
        out,
        "| **Gateway overhead** | | {} | |",
        difference_cells(first_token.direct.latency, first_token.gateway.latency)
    );
    error_notes(
        out,
        &[
            ("direct".to_owned(), &first_token.direct.first_error),
            ("gateway".to_owned(), &first_token.gateway.first_error),
        ],
    );
}

fn memory_section(out: &mut String, memory: &MemoryResults) {
    let _ = writeln!(out, "\n### Gateway memory with concurrent streams\n");
    let _ = writeln!(
        out,
        "Each stream asks for `{}`, opened at {} new streams per second; the gateway's \
         memory is read from `/proc/PID/status` once every stream has received its first chunk.\n",
        memory.prompt,
        rate(memory.open_rate)
    );
    let _ = writeln!(
        out,
        "| Streams | Open at reading | Ramp-up s | VmRSS MiB | VmHWM MiB | Open files | Completed | Errors |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(idle) = memory.idle {
        let _ = writeln!(
            out,
            "| idle, before the first level | 0 | | {} | {} | {} | | |",
            mib_text(idle.rss_kib),
            mib_text(idle.peak_rss_kib),
            memory
                .idle_open_files
                .map_or("-".to_owned(), |files| thousands(files as u64))
        );
    }
    for level in &memory.levels {
        let outcome = &level.outcome;
        let streams = if level.capped_because.is_some() {
            format!(
                "{} (asked: {})",
                thousands(outcome.streams as u64),
                thousands(level.requested as u64)
            )
        } else {
            thousands(outcome.streams as u64)
        };
        let (rss, peak) = outcome
            .memory
            .map_or(("-".to_owned(), "-".to_owned()), |m| {
                (mib_text(m.rss_kib), mib_text(m.peak_rss_kib))
            });
        let _ = writeln!(
            out,
            "| {streams} | {} | {:.1} | {rss} | {peak} | {} | {} | {} |",
            thousands(outcome.open_at_reading as u64),
            outcome.ramp_up.as_secs_f64(),
            outcome
                .open_files
                .map_or("-".to_owned(), |files| thousands(files as u64)),
            thousands(outcome.completed as u64),
            thousands(outcome.errors as u64)
        );
    }
    if let Some(per_stream) = memory.marginal_kib_per_stream() {
        let _ = writeln!(
            out,
            "\nBetween the last two levels each additional open stream cost {per_stream:.1} KiB of resident memory."
        );
    }
    for level in &memory.levels {
        if let Some(reason) = &level.capped_because {
            let _ = writeln!(
                out,
                "\n{} streams were asked for but {} were opened: {reason}.",
                thousands(level.requested as u64),
                thousands(level.outcome.streams as u64)
            );
        }
        if let Some(error) = &level.outcome.first_error {
            let _ = writeln!(
                out,
                "\nFirst error ({} streams): `{error}`",
                thousands(level.outcome.streams as u64)
            );
        }
    }
}

fn targets_section(out: &mut String, results: &Results) {
    let rows = targets::evaluate(results);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Targets\n");
    let _ = writeln!(out, "| Target | Measured | Verdict |");
    let _ = writeln!(out, "|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | **{}** |",
            row.target,
            row.measured,
            row.verdict.label()
        );
    }
}

pub fn render(results: &Results) -> String {
    let mut out = String::new();
    targets_section(&mut out, results);
    if let Some(unary) = &results.unary {
        out.push('\n');
        unary_section(&mut out, unary);
    }
    if let Some(first_token) = &results.first_token {
        first_token_section(&mut out, first_token);
    }
    if let Some(memory) = &results.memory {
        memory_section(&mut out, memory);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::tests::sample_results;

    #[test]
    fn tables_have_as_many_cells_as_their_headers() {
        let markdown = render(&sample_results(Vec::new()));
        let mut columns = None;
        for line in markdown.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let cells = line.matches('|').count();
            match columns {
                None => columns = Some(cells),
                Some(expected) => assert_eq!(cells, expected, "in row: {line}"),
            }
        }
        assert!(markdown.contains("| 5,000 | **Added by the gateway** | | **+0.400** |"));
        assert!(markdown.contains("| 2,500 | **Added by the gateway** | | **+0.250** |"));
        assert!(markdown.contains("### Targets"));
        assert!(markdown.contains("### Non-streaming Converse with tools and an image, open loop"));
        assert!(markdown.contains("| 2,500 | **Added by the gateway** | | **+0.360** |"));
        let closed = markdown.find("closed loop (maximum throughput)").unwrap();
        let mix = markdown.find("with tools and an image").unwrap();
        assert!(closed < mix, "the mix follows the plain runs");
    }
}
