//! Gateway memory while levels of concurrent streams are held open through it.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Args, seconds};
use crate::error::{BenchError, Result};
use crate::figures::{mib_text, thousands};
use crate::held_streams::{self, HoldPlan};
use crate::paths::Paths;
use crate::phases::{SETTLE, progress};
use crate::procfs;
use crate::requests::{self, Delivery, Payload};
use crate::results::{LevelResult, MemoryResults};

/// File descriptors kept aside for everything that is not a stream's socket.
const RESERVED_FILES: u64 = 64;

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
pub async fn run(args: &Args, paths: &Paths) -> Result<MemoryResults> {
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
        &paths.gateway,
        &args.api_key,
        &args.model,
        &format!("{prompt} Keep this stream open."),
        Delivery::Streamed,
        Payload::Text,
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
            held_streams::hold(&paths.gateway, Arc::clone(&request), plan, gateway_pid).await;
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
