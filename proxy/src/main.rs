use clap::Parser;

use bedrock_gateway_proxy::config::{self, Config};
use bedrock_gateway_proxy::{server, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format);
    if let Err(error) = config::validate(&config) {
        tracing::error!(%error, "invalid configuration");
        return std::process::ExitCode::from(2);
    }
    match server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "bedrock-gateway-proxy failed");
            std::process::ExitCode::FAILURE
        }
    }
}
