//! Non-streaming load: open loop at a fixed offered rate, and closed loop for the maximum.
//!
//! Open loop: connection `i` of `C` sends its `k`-th request at `start + (i + k*C) / rate`,
//! whatever happened to earlier requests. When the connection is still busy with an earlier
//! reply at that moment (the server fell behind), the latency is counted from the intended
//! send time, so queueing is not hidden (no coordinated omission). When the connection was
//! idle, it is counted from the actual send, so the load generator's timer granularity
//! (about 1 ms) is not charged to the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::connection::{ReusableConnection, expect_ok, read_to_end};
use crate::cpu::{self, CpuShare, Watched};
use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::requests::PreparedRequest;
use crate::stats::LatencySummary;
use crate::tally::Tally;

/// Longest wait for one reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to the workers to open their connections before the first send.
const CONNECT_LEAD: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
pub struct OpenLoopPlan {
    pub rate: f64,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ClosedLoopPlan {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The measured part of a load run.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub errors: usize,
    pub first_error: Option<String>,
    pub achieved_rate: f64,
    pub latency: Option<LatencySummary>,
    /// Successful replies in the measured window.
    pub successes: usize,
    /// CPU the watched processes used in the measured window.
    pub cpu: Vec<CpuShare>,
}

impl LoadOutcome {
    fn from_tally(
        mut tally: Tally,
        window_start: Instant,
        planned: Duration,
        cpu: Vec<CpuShare>,
    ) -> LoadOutcome {
        LoadOutcome {
            errors: tally.errors,
            first_error: tally.first_error.clone(),
            achieved_rate: tally.rate(window_start, planned),
            latency: tally.summary(),
            successes: tally.successes(),
            cpu,
        }
    }
}

async fn cpu_during(watch: tokio::task::JoinHandle<Vec<CpuShare>>) -> Vec<CpuShare> {
    watch.await.unwrap_or_default()
}

/// Sends one request and reads the whole reply, which must be a 200.
pub async fn exchange(
    connection: &mut ReusableConnection,
    request: &PreparedRequest,
) -> Result<()> {
    let attempt = async {
        let response = connection.get().await?.send(request.to_http()).await?;
        let body = expect_ok(response).await?;
        read_to_end(body).await?;
        Ok(())
    };
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(BenchError::Timeout(REQUEST_TIMEOUT)),
    };
    if outcome.is_err() {
        connection.discard();
    }
    outcome
}

fn record(tally: &mut Tally, outcome: Result<()>, origin: Instant) {
    let done = Instant::now();
    match outcome {
        Ok(()) => tally.success(done.saturating_duration_since(origin), done),
        Err(error) => tally.failure(&error, done),
    }
}

async fn collect(mut workers: JoinSet<Tally>) -> Tally {
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(error) => total.failure(&BenchError::Reply(error.to_string()), Instant::now()),
        }
    }
    total
}

pub async fn open_loop(
    endpoint: &Endpoint,
    request: Arc<PreparedRequest>,
    plan: OpenLoopPlan,
    watched: &[Watched],
) -> LoadOutcome {
    let connections = plan.connections.max(1);
    let rate = plan.rate.max(1.0);
    let start = Instant::now() + CONNECT_LEAD;
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let cpu = tokio::spawn(cpu::watch(watched.to_vec(), measure_from, end));
    let spacing = connections as f64 / rate;
    let mut workers = JoinSet::new();
    for index in 0..connections {
        let endpoint = endpoint.clone();
        let request = Arc::clone(&request);
        let offset = index as f64 / rate;
        workers.spawn(async move {
            let mut connection = ReusableConnection::new(endpoint);
            let mut tally = Tally::default();
            if let Err(error) = connection.get().await {
                tally.failure(&error, Instant::now());
            }
            let mut ready_at = Instant::now();
            for sequence in 0u64.. {
                let intended = start + Duration::from_secs_f64(offset + sequence as f64 * spacing);
                if intended >= end {
                    break;
                }
                let origin = if ready_at <= intended {
                    tokio::time::sleep_until(intended.into()).await;
                    Instant::now()
                } else {
                    intended
                };
                let outcome = exchange(&mut connection, &request).await;
                ready_at = Instant::now();
                if intended >= measure_from {
                    record(&mut tally, outcome, origin);
                }
            }
            tally
        });
    }
    let tally = collect(workers).await;
    LoadOutcome::from_tally(tally, measure_from, plan.duration, cpu_during(cpu).await)
}

pub async fn closed_loop(
    endpoint: &Endpoint,
    request: Arc<PreparedRequest>,
    plan: ClosedLoopPlan,
    watched: &[Watched],
) -> LoadOutcome {
    let start = Instant::now() + CONNECT_LEAD;
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let cpu = tokio::spawn(cpu::watch(watched.to_vec(), measure_from, end));
    let mut workers = JoinSet::new();
    for _ in 0..plan.connections.max(1) {
        let endpoint = endpoint.clone();
        let request = Arc::clone(&request);
        workers.spawn(async move {
            let mut connection = ReusableConnection::new(endpoint);
            let mut tally = Tally::default();
            if let Err(error) = connection.get().await {
                tally.failure(&error, Instant::now());
            }
            tokio::time::sleep_until(start.into()).await;
            loop {
                let origin = Instant::now();
                if origin >= end {
                    break;
                }
                let outcome = exchange(&mut connection, &request).await;
                if origin >= measure_from {
                    record(&mut tally, outcome, origin);
                }
            }
            tally
        });
    }
    let tally = collect(workers).await;
    LoadOutcome::from_tally(tally, measure_from, plan.duration, cpu_during(cpu).await)
}
