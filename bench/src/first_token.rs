//! Streaming time to first token: from sending the request to the first event that carries
//! reply text (a `contentBlockDelta` frame from Bedrock, a chunk with non-empty
//! `delta.content` from the gateway), with a few streams in flight at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::connection::{ReusableConnection, expect_ok};
use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::requests::PreparedRequest;
use crate::stats::LatencySummary;
use crate::stream_follow::{StreamWire, follow};
use crate::tally::Tally;

/// Longest a whole benchmark stream may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct FirstTokenPlan {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct FirstTokenOutcome {
    pub streams: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub latency: Option<LatencySummary>,
}

/// Streams one reply to its end; the time to its first content.
async fn time_to_first_content(
    connection: &mut ReusableConnection,
    request: &PreparedRequest,
    wire: StreamWire,
    origin: Instant,
) -> Result<Duration> {
    let attempt = async {
        let response = connection.get().await?.send(request.to_http()).await?;
        let timeline = follow(expect_ok(response).await?, wire, |_| {}).await?;
        timeline
            .first_content
            .map(|at| at.saturating_duration_since(origin))
            .ok_or_else(|| BenchError::Reply("the stream carried no content".into()))
    };
    let outcome = match tokio::time::timeout(STREAM_TIMEOUT, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(BenchError::Timeout(STREAM_TIMEOUT)),
    };
    if outcome.is_err() {
        connection.discard();
    }
    outcome
}

pub async fn measure(
    endpoint: &Endpoint,
    request: Arc<PreparedRequest>,
    wire: StreamWire,
    plan: FirstTokenPlan,
) -> FirstTokenOutcome {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let endpoint = endpoint.clone();
        let request = Arc::clone(&request);
        workers.spawn(async move {
            let mut connection = ReusableConnection::new(endpoint);
            let mut tally = Tally::default();
            loop {
                let origin = Instant::now();
                if origin >= end {
                    break;
                }
                let outcome = time_to_first_content(&mut connection, &request, wire, origin).await;
                if origin >= measure_from {
                    match outcome {
                        Ok(latency) => tally.success(latency, Instant::now()),
                        Err(error) => tally.failure(&error, Instant::now()),
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(error) => total.failure(&BenchError::Reply(error.to_string()), Instant::now()),
        }
    }
    FirstTokenOutcome {
        streams: total.successes(),
        errors: total.errors,
        first_error: total.first_error.clone(),
        latency: total.summary(),
    }
}
