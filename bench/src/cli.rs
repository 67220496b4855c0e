//! Command-line flags. Durations and rates default to a run of about three minutes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The parts of the benchmark, run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// Non-streaming Converse at a fixed offered rate, then at the maximum (closed loop).
    Unary,
    /// Streaming time to first token.
    FirstToken,
    /// Gateway memory with many concurrent streams.
    Memory,
}

/// Load generator comparing the gateway with the Bedrock emulator it fronts.
#[derive(Debug, Clone, Parser)]
#[command(name = "bedrock-gateway-bench", version)]
pub struct Args {
    /// Base URL of the Bedrock emulator (requests to it are SigV4-signed).
    #[arg(long, default_value = "http://127.0.0.1:4599")]
    pub emulator_url: String,
    /// Base URL of the gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// Gateway process id, for its memory and open files (the memory phase needs it).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// Emulator process id, to report the CPU it uses.
    #[arg(long)]
    pub emulator_pid: Option<u32>,
    /// API key the gateway accepts.
    #[arg(long, env = "BEDROCK_GATEWAY_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Access key id the emulator accepts.
    #[arg(long, default_value = "AKIAEMULATOR")]
    pub access_key_id: String,
    /// Secret access key the emulator verifies signatures with.
    #[arg(long, default_value = "emulator-secret", hide_default_value = true)]
    pub secret_access_key: String,
    /// Region the emulator expects in signatures.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Model id called directly and through the gateway.
    #[arg(long, default_value = "anthropic.claude-3-haiku-20240307-v1:0")]
    pub model: String,

    /// Phases to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Unary, Phase::FirstToken, Phase::Memory])]
    pub phases: Vec<Phase>,
    /// Load-generator threads (kept low: it shares the machine with both servers).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Warm-up before every measured run, in seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,

    /// Offered rates of the open-loop runs, requests per second, in order; the latency
    /// target is judged at the first.
    #[arg(long, value_delimiter = ',', default_values_t = [5000.0, 2500.0])]
    pub rates: Vec<f64>,
    /// Keep-alive connections of the open-loop run.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Measured length of each open-loop run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_seconds: f64,
    /// Offered rate of the open-loop run of requests with tools and an image, requests per
    /// second; the last of `--rates` when not given.
    #[arg(long)]
    pub mix_rate: Option<f64>,
    /// Connections of the closed-loop (maximum throughput) run, each sending back to back.
    #[arg(long, default_value_t = 64)]
    pub closed_connections: usize,
    /// Measured length of the closed-loop run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub closed_seconds: f64,

    /// Streams in flight during the time-to-first-token runs.
    #[arg(long, default_value_t = 8)]
    pub ttft_concurrency: usize,
    /// Measured length of each time-to-first-token run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub ttft_seconds: f64,

    /// Concurrent stream counts held open through the gateway, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10000])]
    pub stream_levels: Vec<usize>,
    /// New streams opened per second while a level ramps up.
    #[arg(long, default_value_t = 2000.0)]
    pub stream_open_rate: f64,
    /// Words in each held stream's reply (`[[emu:words=N]]`).
    #[arg(long, default_value_t = 30)]
    pub stream_words: u32,
    /// Pause between a held stream's events, in milliseconds (`[[emu:delay-between=MS]]`).
    #[arg(long, default_value_t = 1000)]
    pub stream_delay_between_ms: u64,

    /// Also write the Markdown results to this file (they are always printed).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

pub fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_run() {
        let args = Args::try_parse_from(["bench", "--api-key", "k"]).unwrap();
        assert_eq!(args.rates, [5000.0, 2500.0]);
        assert_eq!(args.duration_seconds, 10.0);
        assert_eq!(args.stream_levels, [1000, 10000]);
        assert_eq!(
            args.phases,
            [Phase::Unary, Phase::FirstToken, Phase::Memory]
        );
        let args = Args::try_parse_from([
            "bench",
            "--api-key",
            "k",
            "--phases",
            "memory",
            "--stream-levels",
            "10,20",
        ])
        .unwrap();
        assert_eq!(args.phases, [Phase::Memory]);
        assert_eq!(args.stream_levels, [10, 20]);
        assert_eq!(seconds(-1.0), Duration::ZERO);
    }
}
