use std::io::Write;
use std::net::{SocketAddr, TcpListener};

use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

/// Amazon Bedrock emulator speaking the AWS wire protocol.
#[derive(Debug, Parser)]
#[command(name = "bedrock-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "BEDROCK_EMULATOR_LISTEN",
        default_value = "127.0.0.1:4599"
    )]
    listen: SocketAddr,
    /// The only access key id accepted in SigV4 signatures.
    #[arg(
        long,
        env = "BEDROCK_EMULATOR_ACCESS_KEY_ID",
        default_value = "AKIAEMULATOR"
    )]
    access_key_id: String,
    /// Secret access key used to verify signatures.
    #[arg(
        long,
        env = "BEDROCK_EMULATOR_SECRET_ACCESS_KEY",
        default_value = "emulator-secret",
        hide_env_values = true
    )]
    secret_access_key: String,
    /// When set, requests must carry this x-amz-security-token.
    #[arg(long, env = "BEDROCK_EMULATOR_SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
    /// Region requests must be signed for; also used in ARNs.
    #[arg(long, env = "BEDROCK_EMULATOR_REGION", default_value = "us-east-1")]
    region: String,
    /// HTTP worker threads; defaults to the number of CPUs.
    #[arg(long, env = "BEDROCK_EMULATOR_WORKERS")]
    workers: Option<usize>,
    /// Log format on stderr (filter with BEDROCK_EMULATOR_LOG or RUST_LOG).
    #[arg(
        long,
        env = "BEDROCK_EMULATOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("BEDROCK_EMULATOR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let config = EmulatorConfig {
        access_key_id: args.access_key_id,
        secret_access_key: args.secret_access_key,
        session_token: args.session_token,
        region: args.region,
        workers,
    };
    let listener = TcpListener::bind(args.listen)?;
    let emulator = RunningEmulator::start(config, listener).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "bedrock-emulator listening on {}",
        emulator.endpoint_url()
    )?;
    stdout.flush()?;
    drop(stdout);
    shutdown_signal().await;
    tracing::info!("shutting down");
    emulator.stop().await;
    Ok(())
}
