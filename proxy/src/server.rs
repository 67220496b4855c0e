//! Starting the API and metrics servers, and stopping them gracefully.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use aws_config::SdkConfig;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::middleware::observe;
use crate::routes;
use crate::state::AppState;

/// Time a client has to send the request line and headers.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle client connection is kept open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

pub struct RunningGateway {
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: web::Data<AppState>,
    api: ServerHandle,
    metrics: ServerHandle,
    servers: tokio::task::JoinHandle<io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

/// Starts serving on the given listeners; must be called inside a tokio runtime.
pub fn start(
    config: &Config,
    sdk_config: &SdkConfig,
    api_listener: TcpListener,
    metrics_listener: TcpListener,
) -> io::Result<RunningGateway> {
    let metrics = Metrics::new().map_err(io::Error::other)?;
    let state = web::Data::new(AppState::new(config, sdk_config, metrics.clone()));
    let api_addr = api_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let api_state = state.clone();
    let mut api_server = HttpServer::new(move || {
        App::new()
            .app_data(api_state.clone())
            .wrap(actix_web::middleware::from_fn(observe))
            .configure(routes::configure)
    })
    .disable_signals()
    .on_connect(disable_nagle)
    .shutdown_timeout(config.shutdown_grace_seconds)
    // Idle connections outlive the idle timeouts of client pools and load
    // balancers (httpx 5 s, AWS ALB 60 s): a server that closes first races
    // the next request sent on the connection, which then fails.
    .keep_alive(KEEP_ALIVE)
    .max_connection_rate(1024)
    .backlog(4096)
    // Request heads: actix-http answers 431 beyond 96 headers or 128 KiB of
    // request line and headers (fixed in actix-http, not configurable), and
    // 408 when the head is not complete within this timeout. Bodies have
    // their own deadline (`--body-timeout-seconds`, routes::read_api_request).
    // proxy/tests/limits.rs checks all of them.
    .client_request_timeout(REQUEST_HEAD_TIMEOUT)
    .listen(api_listener)?;
    if config.workers > 0 {
        api_server = api_server.workers(config.workers);
    }
    let api_server = api_server.run();

    let metrics_server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new().route(
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
    .disable_signals()
    .workers(1)
    .listen(metrics_listener)?
    .run();

    let api = api_server.handle();
    let metrics_handle = metrics_server.handle();
    let servers = tokio::spawn(async move {
        let (api_result, metrics_result) = tokio::join!(api_server, metrics_server);
        api_result.and(metrics_result)
    });

    let mut background =
        vec![Arc::clone(&state.catalog).spawn_refresher(config.models_refresh_interval())];
    if state.keys.file().is_some() {
        let reload_state = state.clone();
        let every = Duration::from_secs(config.api_keys_reload_seconds.max(1));
        background.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let keys = reload_state.keys.clone();
                if let Ok(true) = tokio::task::spawn_blocking(move || keys.reload()).await {
                    reload_state
                        .metrics
                        .api_keys_loaded
                        .set(reload_state.keys.len() as i64);
                }
            }
        }));
    }

    Ok(RunningGateway {
        api_addr,
        metrics_addr,
        state,
        api,
        metrics: metrics_handle,
        servers,
        background,
        grace: config.shutdown_grace(),
    })
}

impl RunningGateway {
    /// Marks the gateway not ready and lets in-flight requests and streams
    /// finish within the grace period, then stops. Until they have finished
    /// the gateway keeps accepting connections and answers new API requests
    /// 503 with `Connection: close` (clients retry elsewhere) instead of
    /// refusing connections.
    pub async fn shutdown(self) -> io::Result<()> {
        self.state.start_draining();
        let deadline = Instant::now() + self.grace;
        let metrics = &self.state.metrics;
        let busy =
            || metrics.streams_in_flight.get() > 0 || metrics.http_requests_in_flight.get() > 0;
        while busy() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Idle: a graceful stop closes the connections at once. Still busy
        // after the grace period: what remains is cut.
        self.api.stop(!busy()).await;
        self.metrics.stop(true).await;
        for task in &self.background {
            task.abort();
        }
        self.servers.await.map_err(io::Error::other)?
    }
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this is
/// called, not when the future is first polled, so that a SIGTERM arriving
/// right after the "listening" log line still drains instead of killing.
fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match terminate {
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
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The whole process: configure AWS from the environment, serve, drain on SIGTERM.
pub async fn run(config: Config) -> io::Result<()> {
    let terminated = termination_signal();
    let sdk_config = crate::bedrock::load_gateway_sdk_config(&config)
        .await
        .map_err(io::Error::other)?;
    let api_listener = TcpListener::bind(config.listen)?;
    let metrics_listener = TcpListener::bind(config.metrics_listen)?;
    let gateway = start(&config, &sdk_config, api_listener, metrics_listener)?;
    tracing::info!(
        api = %gateway.api_addr,
        metrics = %gateway.metrics_addr,
        region = sdk_config.region().map(|region| region.as_ref()).unwrap_or_default(),
        api_keys = gateway.state.keys.len(),
        "bedrock-gateway-proxy listening"
    );
    let identity_log = crate::caller_identity::spawn_log(sdk_config.clone());
    if gateway.state.keys.is_empty() {
        tracing::warn!(
            "no API keys are loaded yet: every API request is refused until the key file has keys"
        );
    }
    terminated.await;
    tracing::info!(
        grace_seconds = config.shutdown_grace_seconds,
        "shutting down; draining in-flight requests"
    );
    identity_log.abort();
    gateway.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Small frames (stream events, SSE chunks) must leave at once: Nagle's
/// algorithm against a delayed ACK would hold them for ~40 ms.
fn disable_nagle(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = stream.set_nodelay(true);
    }
}
