use clap::Parser;

use bedrock_gateway_operator::app::{self, Cli, Command};
use bedrock_gateway_operator::telemetry;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        return match app::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot render the CRD: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    telemetry::init(cli.run.log_json);
    match app::run(cli.run).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "bedrock-gateway-operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}
