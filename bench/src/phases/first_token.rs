//! Streaming time to first token on both paths.

use std::sync::Arc;

use crate::cli::{Args, seconds};
use crate::figures::{ms, thousands};
use crate::first_token::{self, FirstTokenOutcome, FirstTokenPlan};
use crate::paths::Paths;
use crate::phases::{SETTLE, progress};
use crate::results::FirstTokenResults;
use crate::stream_follow::StreamWire;

fn report_first_token(label: &str, outcome: &FirstTokenOutcome) {
    let latency = outcome.latency.map_or("no stream".to_owned(), |l| {
        format!("p50 {} ms, p99 {} ms", ms(l.p50), ms(l.p99))
    });
    progress(&format!(
        "  {label}: {} streams, {latency}, {} errors",
        thousands(outcome.streams as u64),
        thousands(outcome.errors as u64)
    ));
}
pub async fn run(args: &Args, paths: &Paths) -> FirstTokenResults {
    let plan = FirstTokenPlan {
        concurrency: args.ttft_concurrency,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.ttft_seconds),
    };
    progress(&format!(
        "time to first token with {} streams in flight",
        plan.concurrency
    ));
    let direct = first_token::measure(
        &paths.emulator,
        Arc::clone(&paths.direct_stream),
        StreamWire::BedrockEventStream,
        plan,
    )
    .await;
    report_first_token("direct", &direct);
    tokio::time::sleep(SETTLE).await;
    let gateway = first_token::measure(
        &paths.gateway,
        Arc::clone(&paths.gateway_stream),
        StreamWire::OpenAiSse,
        plan,
    )
    .await;
    report_first_token("gateway", &gateway);
    tokio::time::sleep(SETTLE).await;
    FirstTokenResults {
        concurrency: plan.concurrency,
        duration: plan.duration,
        direct,
        gateway,
    }
}
