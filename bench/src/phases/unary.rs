//! Non-streaming Converse: open loop at the offered rate, then closed loop, on both paths.

use std::sync::Arc;

use crate::cli::{Args, seconds};
use crate::cpu::{CpuSource, Watched};
use crate::figures::{ms, rate, thousands};
use crate::load::{self, ClosedLoopPlan, LoadOutcome, OpenLoopPlan};
use crate::paths::Paths;
use crate::phases::{SETTLE, progress};
use crate::requests::PreparedRequest;
use crate::results::{OpenLoopRun, UnaryResults};

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
/// The same open-loop load against the emulator directly, then through the gateway.
async fn open_loop_run(
    args: &Args,
    paths: &Paths,
    requests: (&Arc<PreparedRequest>, &Arc<PreparedRequest>),
    offered: f64,
    what: &str,
    watched: &[Watched],
) -> OpenLoopRun {
    let open = OpenLoopPlan {
        rate: offered,
        connections: args.connections,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.duration_seconds),
    };
    progress(&format!(
        "open loop{what} at {} req/s over {} connections",
        rate(open.rate),
        open.connections
    ));
    let (direct_request, gateway_request) = requests;
    let direct = load::open_loop(&paths.emulator, Arc::clone(direct_request), open, watched).await;
    report_load("direct", &direct);
    tokio::time::sleep(SETTLE).await;
    let gateway = load::open_loop(&paths.gateway, Arc::clone(gateway_request), open, watched).await;
    report_load("gateway", &gateway);
    tokio::time::sleep(SETTLE).await;
    OpenLoopRun {
        rate: offered,
        direct,
        gateway,
    }
}

pub async fn run(args: &Args, paths: &Paths) -> UnaryResults {
    let watched = watched_processes(args);
    let closed = ClosedLoopPlan {
        connections: args.closed_connections,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.closed_seconds),
    };
    let mut open_runs = Vec::new();
    for &offered in &args.rates {
        let requests = (&paths.direct_unary, &paths.gateway_unary);
        open_runs.push(open_loop_run(args, paths, requests, offered, "", &watched).await);
    }

    progress(&format!(
        "closed loop over {} connections",
        closed.connections
    ));
    let closed_direct = load::closed_loop(
        &paths.emulator,
        Arc::clone(&paths.direct_unary),
        closed,
        &watched,
    )
    .await;
    report_load("direct", &closed_direct);
    tokio::time::sleep(SETTLE).await;
    let closed_gateway = load::closed_loop(
        &paths.gateway,
        Arc::clone(&paths.gateway_unary),
        closed,
        &watched,
    )
    .await;
    report_load("gateway", &closed_gateway);
    tokio::time::sleep(SETTLE).await;

    let mix = match args.mix_rate.or(args.rates.last().copied()) {
        Some(offered) if offered > 0.0 => {
            let requests = (&paths.direct_mix, &paths.gateway_mix);
            let what = " with tools and an image";
            Some(open_loop_run(args, paths, requests, offered, what, &watched).await)
        }
        _ => None,
    };

    UnaryResults {
        connections: args.connections,
        warmup: seconds(args.warmup_seconds),
        duration: seconds(args.duration_seconds),
        open_runs,
        closed_connections: closed.connections,
        closed_duration: closed.duration,
        closed_direct,
        closed_gateway,
        mix,
    }
}
