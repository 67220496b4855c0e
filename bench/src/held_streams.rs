//! Many slow streams held open through the gateway at once, to read its memory with all of
//! them in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::connection::{Connection, expect_ok};
use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::procfs::{self, MemoryReading};
use crate::requests::PreparedRequest;
use crate::stream_follow::{StreamWire, follow};

/// How often progress is checked while streams ramp up.
const POLL_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
pub struct HoldPlan {
    pub streams: usize,
    /// New streams per second while ramping up.
    pub open_rate: f64,
    /// Longest wait for every stream's first event.
    pub first_event_timeout: Duration,
    /// Longest a single stream may take from start to end.
    pub stream_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HoldOutcome {
    pub streams: usize,
    /// Time from the first connection until every stream had its first event.
    pub ramp_up: Duration,
    /// Streams that had started and not yet ended when memory was read.
    pub open_at_reading: usize,
    pub memory: Option<MemoryReading>,
    pub open_files: Option<usize>,
    pub completed: usize,
    pub errors: usize,
    pub first_error: Option<String>,
}

#[derive(Debug, Default)]
struct Progress {
    first_events: AtomicUsize,
    failed_before_first_event: AtomicUsize,
    ended: AtomicUsize,
}

async fn hold_one(
    endpoint: &Endpoint,
    request: &PreparedRequest,
    progress: &Progress,
) -> Result<()> {
    let first_event_seen = AtomicBool::new(false);
    let outcome = async {
        let mut connection = Connection::open(endpoint).await?;
        let response = connection.send(request.to_http()).await?;
        follow(expect_ok(response).await?, StreamWire::OpenAiSse, |_| {
            first_event_seen.store(true, Ordering::Relaxed);
            progress.first_events.fetch_add(1, Ordering::Relaxed);
        })
        .await
    }
    .await;
    if first_event_seen.load(Ordering::Relaxed) {
        progress.ended.fetch_add(1, Ordering::Relaxed);
    } else {
        progress
            .failed_before_first_event
            .fetch_add(1, Ordering::Relaxed);
    }
    outcome.map(|_| ())
}

pub async fn hold(
    endpoint: &Endpoint,
    request: Arc<PreparedRequest>,
    plan: HoldPlan,
    gateway_pid: u32,
) -> HoldOutcome {
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let spacing = 1.0 / plan.open_rate.max(1.0);
    let mut streams = JoinSet::new();
    for index in 0..plan.streams {
        let opens_at = start + Duration::from_secs_f64(index as f64 * spacing);
        tokio::time::sleep_until(opens_at.into()).await;
        let endpoint = endpoint.clone();
        let request = Arc::clone(&request);
        let progress = Arc::clone(&progress);
        let timeout = plan.stream_timeout;
        streams.spawn(async move {
            match tokio::time::timeout(timeout, hold_one(&endpoint, &request, &progress)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(BenchError::Timeout(timeout)),
            }
        });
    }
    loop {
        let settled = progress.first_events.load(Ordering::Relaxed)
            + progress.failed_before_first_event.load(Ordering::Relaxed);
        if settled >= plan.streams || start.elapsed() >= plan.first_event_timeout {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let ramp_up = start.elapsed();
    let memory = procfs::memory(gateway_pid).ok();
    let open_files = procfs::open_files(gateway_pid).ok();
    let open_at_reading = progress
        .first_events
        .load(Ordering::Relaxed)
        .saturating_sub(progress.ended.load(Ordering::Relaxed));

    let (mut completed, mut errors, mut first_error) = (0, 0, None);
    while let Some(joined) = streams.join_next().await {
        let outcome = joined.unwrap_or_else(|error| Err(BenchError::Reply(error.to_string())));
        match outcome {
            Ok(()) => completed += 1,
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    HoldOutcome {
        streams: plan.streams,
        ramp_up,
        open_at_reading,
        memory,
        open_files,
        completed,
        errors,
        first_error,
    }
}
