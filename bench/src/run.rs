//! The whole benchmark: checks, then each phase in turn, with progress on stderr.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Args, Phase, seconds};
use crate::cpu::{CpuSource, Watched};
use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::figures::{mib_text, ms, rate, thousands};
use crate::first_token::{self, FirstTokenOutcome, FirstTokenPlan};
use crate::held_streams::{self, HoldPlan};
use crate::load::{self, ClosedLoopPlan, LoadOutcome, OpenLoopPlan};
use crate::preflight::{self, CHAT_COMPLETION_TEXT, CONVERSE_TEXT};
use crate::procfs;
use crate::requests::{self, Delivery, PreparedRequest};
use crate::results::{FirstTokenResults, LevelResult, MemoryResults, Results, UnaryResults};
use crate::signing::AwsSigner;
use crate::stream_follow::StreamWire;

const PROMPT: &str = "How long does a round trip through the gateway take?";
/// File descriptors kept aside for everything that is not a stream's socket.
const RESERVED_FILES: u64 = 64;
/// Time for closed connections to be torn down between runs.
const SETTLE: Duration = Duration::from_secs(1);

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

struct Targets {
    emulator: Endpoint,
    gateway: Endpoint,
    direct_unary: Arc<PreparedRequest>,
    gateway_unary: Arc<PreparedRequest>,
    direct_stream: Arc<PreparedRequest>,
    gateway_stream: Arc<PreparedRequest>,
}

impl Targets {
    fn prepare(args: &Args) -> Result<Targets> {
        let emulator = Endpoint::parse(&args.emulator_url)?;
        let gateway = Endpoint::parse(&args.gateway_url)?;
        let signer = AwsSigner {
            access_key_id: args.access_key_id.clone(),
            secret_access_key: args.secret_access_key.clone(),
            region: args.region.clone(),
        };
        let direct = |delivery| {
            requests::emulator_converse(&emulator, &signer, &args.model, PROMPT, delivery)
                .map(Arc::new)
        };
        let through_gateway = |delivery| {
            requests::gateway_chat(&gateway, &args.api_key, &args.model, PROMPT, delivery)
                .map(Arc::new)
        };
        Ok(Targets {
            direct_unary: direct(Delivery::Unary)?,
            direct_stream: direct(Delivery::Streamed)?,
            gateway_unary: through_gateway(Delivery::Unary)?,
            gateway_stream: through_gateway(Delivery::Streamed)?,
            emulator,
            gateway,
        })
    }

    async fn check(&self) -> Result<()> {
        progress("checking both paths with one request of each kind");
        preflight::check_unary(
            "emulator Converse",
            &self.emulator,
            &self.direct_unary,
            CONVERSE_TEXT,
        )
        .await?;
        preflight::check_unary(
            "gateway chat completion",
            &self.gateway,
            &self.gateway_unary,
            CHAT_COMPLETION_TEXT,
        )
        .await?;
        preflight::check_stream(
            "emulator ConverseStream",
            &self.emulator,
            &self.direct_stream,
            StreamWire::BedrockEventStream,
        )
        .await?;
        preflight::check_stream(
            "gateway streamed chat completion",
            &self.gateway,
            &self.gateway_stream,
            StreamWire::OpenAiSse,
        )
        .await
    }
}

fn report_load(label: &str, outcome: &LoadOutcome) {
    let latency = outcome
        .latency
        .map_or("no successful reply".to_owned(), |l| {
            format!(
                "p50 {} ms, p99 {} ms, max {} ms",
                ms(l.p50),
                ms(l.p99),
                ms(l.max)
            )
        });
    let cpu: Vec<String> = outcome
        .cpu
        .iter()
        .map(|share| format!("{} {:.2}", share.label, share.cores))
        .collect();
    progress(&format!(
        "  {label}: {} req/s, {latency}, {} errors; CPUs busy: {}",
        rate(outcome.achieved_rate),
        thousands(outcome.errors as u64),
        cpu.join(", ")
    ));
}

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

/// Whose CPU time is reported: the servers when their ids are known, this load generator,
/// and the whole machine (which shows whether anything else competed for the CPUs).
fn watched_processes(args: &Args) -> Vec<Watched> {
    let mut watched = Vec::new();
    if let Some(pid) = args.gateway_pid {
        watched.push(Watched {
            label: "gateway",
            source: CpuSource::Process(pid),
        });
    }
    if let Some(pid) = args.emulator_pid {
        watched.push(Watched {
            label: "emulator",
            source: CpuSource::Process(pid),
        });
    }
    watched.push(Watched {
        label: "load generator",
        source: CpuSource::Process(std::process::id()),
    });
    watched.push(Watched {
        label: "whole machine",
        source: CpuSource::Machine,
    });
    watched
}

async fn unary_phase(args: &Args, targets: &Targets) -> UnaryResults {
    let watched = watched_processes(args);
    let open = OpenLoopPlan {
        rate: args.rate,
        connections: args.connections,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.duration_seconds),
    };
    let closed = ClosedLoopPlan {
        connections: args.closed_connections,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.closed_seconds),
    };
    progress(&format!(
        "open loop at {} req/s over {} connections",
        rate(open.rate),
        open.connections
    ));
    let open_direct = load::open_loop(
        &targets.emulator,
        Arc::clone(&targets.direct_unary),
        open,
        &watched,
    )
    .await;
    report_load("direct", &open_direct);
    tokio::time::sleep(SETTLE).await;
    let open_gateway = load::open_loop(
        &targets.gateway,
        Arc::clone(&targets.gateway_unary),
        open,
        &watched,
    )
    .await;
    report_load("gateway", &open_gateway);
    tokio::time::sleep(SETTLE).await;

    progress(&format!(
        "closed loop over {} connections",
        closed.connections
    ));
    let closed_direct = load::closed_loop(
        &targets.emulator,
        Arc::clone(&targets.direct_unary),
        closed,
        &watched,
    )
    .await;
    report_load("direct", &closed_direct);
    tokio::time::sleep(SETTLE).await;
    let closed_gateway = load::closed_loop(
        &targets.gateway,
        Arc::clone(&targets.gateway_unary),
        closed,
        &watched,
    )
    .await;
    report_load("gateway", &closed_gateway);
    tokio::time::sleep(SETTLE).await;

    UnaryResults {
        rate: open.rate,
        connections: open.connections,
        warmup: open.warmup,
        duration: open.duration,
        open_direct,
        open_gateway,
        closed_connections: closed.connections,
        closed_duration: closed.duration,
        closed_direct,
        closed_gateway,
    }
}

async fn first_token_phase(args: &Args, targets: &Targets) -> FirstTokenResults {
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
        &targets.emulator,
        Arc::clone(&targets.direct_stream),
        StreamWire::BedrockEventStream,
        plan,
    )
    .await;
    report_first_token("direct", &direct);
    tokio::time::sleep(SETTLE).await;
    let gateway = first_token::measure(
        &targets.gateway,
        Arc::clone(&targets.gateway_stream),
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

/// The most streams the open-file limits allow, and which limit that is.
fn stream_capacity(gateway_pid: u32) -> Result<Option<(usize, String)>> {
    let mut capacity: Option<(usize, String)> = None;
    let mut consider = |streams: u64, reason: String| {
        let streams = usize::try_from(streams / 100 * 100).unwrap_or(usize::MAX);
        if capacity
            .as_ref()
            .is_none_or(|(current, _)| streams < *current)
        {
            capacity = Some((streams, reason));
        }
    };
    if let Some(limit) = procfs::open_files_limit(gateway_pid)? {
        consider(
            limit.saturating_sub(RESERVED_FILES) / 2,
            format!(
                "the gateway's open-file limit is {} and each stream holds two sockets in it \
                 (the client's and the one to Bedrock)",
                thousands(limit)
            ),
        );
    }
    if let Some(limit) = procfs::open_files_limit(std::process::id())? {
        consider(
            limit.saturating_sub(RESERVED_FILES),
            format!(
                "the load generator's open-file limit is {}",
                thousands(limit)
            ),
        );
    }
    Ok(capacity)
}

async fn memory_phase(args: &Args, targets: &Targets) -> Result<MemoryResults> {
    let gateway_pid = args
        .gateway_pid
        .ok_or_else(|| BenchError::InvalidArgument {
            what: "flag",
            value: "--gateway-pid".into(),
            reason: "the memory phase needs the gateway's process id".into(),
        })?;
    let prompt = format!(
        "[[emu:words={}]] [[emu:delay-between={}]]",
        args.stream_words, args.stream_delay_between_ms
    );
    let request = Arc::new(requests::gateway_chat(
        &targets.gateway,
        &args.api_key,
        &args.model,
        &format!("{prompt} Keep this stream open."),
        Delivery::Streamed,
    )?);
    let capacity = stream_capacity(gateway_pid)?;
    let idle = procfs::memory(gateway_pid).ok();
    let idle_open_files = procfs::open_files(gateway_pid).ok();
    // messageStart, one delta per word plus `Echo:`, contentBlockStop, messageStop, metadata.
    let events = u64::from(args.stream_words) + 5;
    let stream_length = Duration::from_millis(events * args.stream_delay_between_ms);
    let mut levels = Vec::new();
    for &requested in &args.stream_levels {
        let (streams, capped_because) = match &capacity {
            Some((most, reason)) if requested > *most => (*most, Some(reason.clone())),
            _ => (requested, None),
        };
        let ramp = seconds(streams as f64 / args.stream_open_rate.max(1.0));
        let plan = HoldPlan {
            streams,
            open_rate: args.stream_open_rate,
            first_event_timeout: ramp + Duration::from_secs(30),
            stream_timeout: ramp + stream_length + Duration::from_secs(60),
        };
        progress(&format!(
            "holding {} streams open through the gateway",
            thousands(streams as u64)
        ));
        let outcome =
            held_streams::hold(&targets.gateway, Arc::clone(&request), plan, gateway_pid).await;
        progress(&format!(
            "  {} open at reading, VmRSS {} MiB, {} completed, {} errors",
            thousands(outcome.open_at_reading as u64),
            outcome
                .memory
                .map_or("-".to_owned(), |m| mib_text(m.rss_kib)),
            thousands(outcome.completed as u64),
            thousands(outcome.errors as u64)
        ));
        levels.push(LevelResult {
            requested,
            capped_because,
            outcome,
        });
        tokio::time::sleep(SETTLE).await;
    }
    Ok(MemoryResults {
        prompt,
        open_rate: args.stream_open_rate,
        idle,
        idle_open_files,
        levels,
    })
}

pub async fn run(args: &Args) -> Result<Results> {
    let targets = Targets::prepare(args)?;
    targets.check().await?;
    let mut results = Results::default();
    for phase in &args.phases {
        match phase {
            Phase::Unary => results.unary = Some(unary_phase(args, &targets).await),
            Phase::FirstToken => {
                results.first_token = Some(first_token_phase(args, &targets).await);
            }
            Phase::Memory => results.memory = Some(memory_phase(args, &targets).await?),
        }
    }
    Ok(results)
}
