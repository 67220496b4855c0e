//! The operator process: flags, the health and metrics endpoint, leader
//! election and the controller, stopped gracefully on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::{Parser, Subcommand};
use kube::{Client, CustomResourceExt};

use crate::controller::{self, Context, Settings};
use crate::crd::BedrockGateway;
use crate::leader::{LeaderElector, LeaseSettings};
use crate::metrics::Metrics;

#[derive(Debug, Parser)]
#[command(
    name = "bedrock-gateway-operator",
    version,
    about = "Runs bedrock-gateway-proxy for BedrockGateway resources and wires it into Open WebUI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the BedrockGateway CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunFlags {
    /// Proxy image used when a BedrockGateway names none.
    #[arg(long, env = "BEDROCK_GATEWAY_PROXY_IMAGE", default_value = concat!("ghcr.io/bedrock-gateway/bedrock-gateway-proxy:", env!("CARGO_PKG_VERSION")))]
    pub proxy_image: String,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// Elect one active replica through a Lease.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_OPERATOR_LEADER_ELECTION",
        default_value_t = false
    )]
    pub leader_election: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_OPERATOR_LEASE_NAME",
        default_value = "bedrock-gateway-operator"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds of a lease; a replica that stops renewing loses it after this long.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_OPERATOR_LEASE_SECONDS",
        default_value_t = 15
    )]
    pub lease_seconds: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "BEDROCK_GATEWAY_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Seconds between reconciles of a healthy gateway.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_OPERATOR_RESYNC_SECONDS",
        default_value_t = 300
    )]
    pub resync_seconds: u64,
    /// Logs as JSON lines (`false` for plain text).
    #[arg(long, env = "BEDROCK_GATEWAY_OPERATOR_LOG_JSON", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_json: bool,
}

pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&BedrockGateway::crd())
}

async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(flags: RunFlags) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    let metrics = Metrics::new()?;
    let identity = flags
        .identity
        .clone()
        .unwrap_or_else(|| format!("bedrock-gateway-operator-{}", uuid::Uuid::new_v4().simple()));

    let served = metrics.clone();
    let server = HttpServer::new(move || {
        let metrics = served.clone();
        App::new()
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
            .route(
                "/readyz",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4; charset=utf-8")
                            .body(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(flags.listen)?
    .run();
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        termination_signal().await;
        let _ = stop_sender.send(true);
    });
    let stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };

    let elector = flags.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            LeaseSettings {
                namespace: flags.lease_namespace.clone(),
                name: flags.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: Duration::from_secs(flags.lease_seconds.max(2)),
                renew_every: Duration::from_secs((flags.lease_seconds / 3).max(1)),
            },
        )
    });
    if let Some(elector) = &elector {
        tracing::info!(%identity, "waiting for the leader lease");
        tokio::select! {
            _ = elector.acquire() => {}
            _ = stopped(stop_receiver.clone()) => { server_handle.stop(true).await; return Ok(()); }
        }
        tracing::info!(%identity, "leading");
    }
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(
        client,
        Settings {
            proxy_image: flags.proxy_image.clone(),
            resync: Duration::from_secs(flags.resync_seconds.max(10)),
            watch_namespace: flags.watch_namespace.clone(),
        },
        metrics.clone(),
        Some(identity.clone()),
    ));
    let controller = controller::run(ctx, stopped(stop_receiver.clone()));
    match &elector {
        Some(elector) => {
            tokio::select! {
                _ = controller => {}
                _ = elector.keep_renewing() => {
                    tracing::error!("lost the leader lease; exiting so another replica leads");
                    metrics.leader.set(0);
                    server_handle.stop(true).await;
                    return Err("lost the leader lease".into());
                }
            }
        }
        None => controller.await,
    }
    metrics.leader.set(0);
    server_handle.stop(true).await;
    let _ = server_task.await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_crd_matches_the_rust_types() {
        let committed = include_str!("../../crds/bedrockgateways.bedrock-gateway.io.yaml");
        assert!(
            committed == super::crd_yaml().unwrap(),
            "crds/ is stale: run scripts/generate-crds.sh"
        );
    }
}
