//! A Bedrock emulator that speaks the AWS wire protocol (restJson1, SigV4, event streams).
//!
//! One server answers both the runtime and the control-plane APIs, so the AWS SDKs can be
//! pointed at it with a single endpoint URL:
//!
//! | Operation | Route |
//! |---|---|
//! | Converse | `POST /model/{modelId}/converse` |
//! | ConverseStream | `POST /model/{modelId}/converse-stream` |
//! | InvokeModel (embedding models) | `POST /model/{modelId}/invoke` |
//! | ListFoundationModels | `GET /foundation-models` |
//! | GetFoundationModel | `GET /foundation-models/{modelIdentifier}` |
//! | ListInferenceProfiles | `GET /inference-profiles` |
//! | GetInferenceProfile | `GET /inference-profiles/{id}` |
//! | Observations (unsigned, emulator only) | `GET /_emulator/observations` |
//!
//! Every request except the observations endpoint must carry a valid SigV4 signature for
//! signing name `bedrock` and the configured region, made with the configured access key.
//! When a session token is configured, `x-amz-security-token` must equal it; when none is
//! configured, any token is accepted. Signatures older or newer than 15 minutes are rejected.
//!
//! # Deterministic replies
//!
//! * The reply text is `"Echo: "` followed by the text of the last user message (its text
//!   blocks joined with a single space), with scripting directives removed and surrounding
//!   whitespace trimmed. When nothing is left the reply is `"Echo:"`.
//! * Stream deltas split the reply into words: each `contentBlockDelta` (index 0) carries one
//!   word plus the whitespace that follows it, so the deltas concatenate to the reply exactly.
//!   Events: `messageStart`, the deltas, `contentBlockStop`, `messageStop`, `metadata`. Every
//!   event payload also has a `p` padding field, as Bedrock's do.
//! * `usage.inputTokens` is the number of whitespace-separated words in all system text blocks
//!   and all message text blocks, as sent (directives included), and at least 1.
//!   `usage.outputTokens` is the number of words in the reply; `totalTokens` is their sum.
//! * A `stopSequences` entry found in the reply cuts the reply just before its earliest match
//!   (stop reason `stop_sequence`). Then, if the reply has more words than
//!   `inferenceConfig.maxTokens`, it is cut after that many words (stop reason `max_tokens`).
//!   Otherwise the stop reason is `end_turn`.
//!
//! # Scripting directives
//!
//! Directives are written `[[emu:key=value]]` in the last user message (for InvokeModel, in
//! any input text). A block may hold several pairs separated by spaces, commas or semicolons,
//! and several blocks may appear. Unknown keys or bad values give a ValidationException.
//!
//! * `error=<ExceptionName>`: answer that exception (e.g. `ThrottlingException`, 429) instead
//!   of a reply; for ConverseStream it is an HTTP error too, before any event.
//! * `stream-error=<member>` with optional `after=<n>` (default 0): ConverseStream sends
//!   `messageStart`, `n` deltas, then an exception event with that union member name
//!   (`throttlingException`, `modelStreamErrorException`, `validationException`,
//!   `internalServerException`, `serviceUnavailableException`) and ends the response.
//! * `delay-first=<ms>`: wait before the first byte (Converse, InvokeModel) or the first
//!   event (ConverseStream).
//! * `delay-between=<ms>`: wait between consecutive stream events.
//! * `words=<n>`: the reply is `Echo:` followed by ` w1 w2 ... wn` instead of the echo.
//! * `stop=<stopReason>`: force the stop reason, e.g. `guardrail_intervened`.
//!
//! # Embeddings
//!
//! InvokeModel answers the Titan (`amazon.titan-embed-text-v1`, `amazon.titan-embed-text-v2:0`)
//! and Cohere (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`)
//! request formats with vectors seeded from a SHA-256 of each text, normalised when the model
//! family normalises (Titan v2 unless `normalize` is false, Cohere always). The
//! `X-Amzn-Bedrock-Input-Token-Count` header holds the number of words in the input texts.

pub mod catalog;
pub mod clock;
pub mod control_plane;
pub mod converse;
pub mod converse_stream;
pub mod embeddings;
pub mod error;
pub mod eventstream;
pub mod faults;
pub mod observations;
pub mod routing;
mod server;
pub mod sigv4;
pub mod uri_encoding;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

pub use error::{Error, ErrorKind};
pub use observations::{Observations, OperationObservations};

/// Credentials, region and worker count of an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry this `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
    /// HTTP worker threads (each runs its own event loop).
    pub workers: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            access_key_id: "AKIAEMULATOR".to_string(),
            secret_access_key: "emulator-secret".to_string(),
            session_token: None,
            region: "us-east-1".to_string(),
            workers: 2,
        }
    }
}

/// A running emulator; stop it with [`RunningEmulator::stop`] (dropping it also stops it).
#[derive(Debug)]
pub struct RunningEmulator {
    local_addr: SocketAddr,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    recorder: Arc<observations::Recorder>,
}

impl RunningEmulator {
    /// Serves on `listener`, spawning the server on the current tokio runtime.
    pub async fn start(
        config: EmulatorConfig,
        listener: TcpListener,
    ) -> std::io::Result<RunningEmulator> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let workers = config.workers.max(1);
        let recorder = Arc::new(observations::Recorder::default());
        let state = web::Data::new(server::AppState::new(config, Arc::clone(&recorder)));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(server::handle))
        })
        .workers(workers)
        .backlog(8192)
        .max_connections(100_000)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%local_addr, workers, "bedrock emulator started");
        Ok(RunningEmulator {
            local_addr,
            handle,
            task: Some(task),
            recorder,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://IP:PORT`, suitable as an SDK endpoint URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    pub fn observations(&self) -> Observations {
        self.recorder.snapshot()
    }

    /// Stops accepting connections, lets in-flight requests finish for up to a second, and
    /// waits for the server to exit.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "emulator server task failed");
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The stop command is sent eagerly; the returned future only waits for completion.
            drop(self.handle.stop(false));
        }
    }
}
