//! `bedrock-gateway-bench`: measures the gateway's added latency, time to first token and
//! memory against the Bedrock emulator, as a process of its own. See `scripts/bench.sh`.

mod cli;
mod connection;
mod cpu;
mod endpoint;
mod error;
mod eventstream;
mod figures;
mod first_token;
mod held_streams;
mod load;
mod paths;
mod phases;
mod preflight;
mod procfs;
mod report;
mod requests;
mod results;
mod run;
mod signing;
mod sse;
mod stats;
mod stream_follow;
mod tally;
mod targets;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bedrock-gateway-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let results = match runtime.block_on(run::run(&args)) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("bedrock-gateway-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let markdown = report::render(&results);
    if let Some(path) = &args.markdown
        && let Err(error) = std::fs::write(path, &markdown)
    {
        eprintln!(
            "bedrock-gateway-bench: cannot write {}: {error}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    print!("{markdown}");
    ExitCode::SUCCESS
}
