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
//! | Register temporary credentials (unsigned, emulator only) | `POST /_emulator/credentials` |
//!
//! Every request except the two emulator endpoints must carry a valid SigV4 signature for
//! signing name `bedrock` and the configured region, made with the configured access key.
//! When a session token is configured, `x-amz-security-token` must equal it; when none is
//! configured, any token is accepted. Signatures older or newer than 15 minutes are rejected.
//!
//! # Temporary credentials
//!
//! Besides its configured pair the emulator accepts temporary credentials registered at run
//! time, such as the ones STS or the EKS Pod Identity agent issued to a client under test:
//! `POST /_emulator/credentials` with
//! `{"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}` (`expiration` as an
//! RFC 3339 UTC timestamp, as STS writes it, or Unix seconds), or
//! [`RunningEmulator::register_credentials`] in process. The answer repeats the access key id
//! and the expiration, never the secret. A request signed with a registered key must carry its
//! session token (`UnrecognizedClientException` otherwise), and from the expiration on it is
//! refused like AWS refuses it: 403 `ExpiredTokenException`, "The security token included in
//! the request is expired". Registering the same access key id again replaces the set.
//!
//! # Deterministic replies
//!
//! * The reply text is `"Echo: "` followed by the text of the last user message (its text
//!   blocks joined with a single space), with scripting directives removed and surrounding
//!   whitespace trimmed. When nothing is left the reply is `"Echo:"`. Images and documents of
//!   that message are appended, see [Converse features](#converse-features).
//! * Stream deltas split the reply into words: each `contentBlockDelta` carries one word plus
//!   the whitespace that follows it, so the deltas concatenate to the reply exactly. Events:
//!   `messageStart`, per content block its deltas and `contentBlockStop` (each block with its
//!   own `contentBlockIndex`, counted from 0), `messageStop`, `metadata`. Every event payload
//!   also has a `p` padding field, as Bedrock's do.
//! * `usage.inputTokens` is the number of whitespace-separated words in all system text blocks
//!   and all message text blocks, as sent (directives included), less the cached words (see
//!   prompt caching), and at least 1. `usage.outputTokens` is the number of words in the
//!   reasoning and reply text plus those of each tool call's input JSON; `totalTokens` is the
//!   sum of the input, output and cache token counts.
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
//! * `tool-calls=<n>`: call the first `n` tools of the `toolConfig` (parallel tool calls).
//! * `guardrail=intervene` (or `pass`): the request's guardrail intervenes.
//! * `reset=before` or `reset=<n>`: drop the connection with a TCP reset (RST), as a network
//!   fault would. `before`: before any byte of the answer, status line included. `<n>`:
//!   ConverseStream sends the response head, `messageStart` and `n` deltas, then resets (a
//!   reply with fewer deltas ends normally); Converse resets before answering. Chat
//!   operations only. The delay the next event would have had (`delay-first`,
//!   `delay-between`) comes before the reset: a TCP reset discards what the peer has not
//!   read yet, so a client that should see the frames before the reset needs a moment to
//!   read them.
//!
//! # Converse features
//!
//! Converse and ConverseStream check these request members like Bedrock does (a
//! ValidationException with a Bedrock-like message otherwise) and answer deterministically.
//!
//! **Tools** (`toolConfig`): `tools` must not be empty; tool names are 1-64 characters of
//! `[a-zA-Z0-9_-]`, unique; `inputSchema.json` is a schema with `type: "object"` (as Claude
//! requires, applied to every model); a `tool` choice must name
//! a defined tool. `toolUse` and `toolResult` blocks need a `toolConfig`, and each
//! `toolResult` must answer a `toolUse` of the assistant turn just before it.
//!
//! * When the last user message holds `toolResult` blocks, the reply is `"Echo: "` followed by
//!   the results' text (JSON results serialised) joined with a single space; `end_turn`.
//! * Otherwise, with `toolChoice` `any` the reply calls the first tool; with `tool` the named
//!   tool; with the `tool-calls=<n>` directive the first `n` tools (for a `tool` choice, `n`
//!   calls of the named tool). Forced choices (`any`, `tool`) answer with the tool calls only;
//!   with `auto` and the directive, the echo text block comes first. Stop reason `tool_use`.
//! * A call's `input` has one entry per property of the tool schema's `properties` (in the
//!   order the parsed schema lists them, which is by name): `string` gives
//!   `"<property>-value"`, `integer` and `number` give 1, `boolean` true, `array` `[]`,
//!   `object` `{}`, anything else null. Its `toolUseId` is `tooluse_<index>_<12 hex digits>`,
//!   the digits derived from the conversation length, the prompt, the index and the name.
//! * Streamed, a tool call is `contentBlockStart` `{start: {toolUse: {toolUseId, name}}}`, its
//!   input JSON in at least two `{delta: {toolUse: {input}}}` fragments, `contentBlockStop`.
//!
//! **Reasoning** (`additionalModelRequestFields`): Claude 3.7 and Claude 4 or later accept
//! `thinking` `{type: "enabled", budget_tokens}` (budget at least 1024, below `maxTokens` when
//! that is set; `temperature` unset or 1, `topP` unset; not with a forced tool choice; when
//! the last message holds tool results, the assistant turn before it must start with its
//! `reasoningContent` block) and `top_k`; older Claude models accept `top_k` only; Nova 2 (`amazon.nova-2*`) accepts
//! `reasoningConfig` `{type, maxReasoningEffort: low|medium|high}`; gpt-oss
//! (`openai.gpt-oss*`) accepts `reasoning_effort` `low|medium|high`. Any other key is
//! refused: "The model returned the following errors: extraneous key [<key>] is not
//! permitted". With reasoning on, the reply starts with a block
//! `{reasoningContent: {reasoningText: {text: "Thinking about: <prompt>", signature}}}` (the
//! signature a SHA-256 hex digest of the text); streamed, that is word deltas
//! `{reasoningContent: {text}}` then one `{reasoningContent: {signature}}` at index 0, and the
//! following blocks take the next indexes.
//!
//! **Images and documents**: `image` `{format: gif|jpeg|png|webp, source: {bytes}}` up to
//! 3.75 MB, at most 20 per request; `document` `{format: csv|doc|docx|html|md|pdf|txt|xls|xlsx,
//! name, source: {bytes} or {text}}` up to 4.5 MB, at most 5 per request, the name made of
//! letters, digits, single spaces, hyphens, parentheses and square brackets. `bytes` must be
//! non-empty valid base64. The echo of the last user message appends, per block in order,
//! ` [image/<format> <n> bytes]` or ` [document <name> <format> <n> bytes]`. The SHA-256 of
//! every image of the last valid request with images, in order, is in the observations
//! (`lastImageSha256`), so a test can tell the bytes arrived unchanged.
//!
//! **Prompt caching**: `cachePoint` `{type: "default"}` blocks may appear in `system` and in
//! messages. The prefix before the last one (with the model id) is remembered by the running
//! emulator (the last 4096 prefixes): the first request with that prefix gets
//! `cacheWriteInputTokens` = the words before the cache point and `cacheReadInputTokens` 0,
//! later ones the reverse; `inputTokens` leaves those words out. Without a cache point both
//! fields are absent. No minimum prefix length applies.
//!
//! **Guardrails** (`guardrailConfig`): `guardrailIdentifier` is an id (`[a-z0-9]+`) or a
//! guardrail ARN, `guardrailVersion` `DRAFT` or a number, `trace` `enabled|disabled|
//! enabled_full`, `streamProcessingMode` `sync|async`. With a guardrail and the
//! `guardrail=intervene` directive, the reply is "Sorry, the model cannot answer this
//! question." with stop reason `guardrail_intervened` (no trace); without a guardrail the
//! directive changes nothing.
//!
//! **Request metadata** (`requestMetadata`): at most 16 entries, keys of 1-256 and values of
//! 0-256 characters from `[a-zA-Z0-9\s:_@$#=/+,-.]`. The last valid one is recorded in the
//! observations (`lastRequestMetadata` at `GET /_emulator/observations`).
//!
//! # Embeddings
//!
//! InvokeModel answers the Titan (`amazon.titan-embed-text-v1`, `amazon.titan-embed-text-v2:0`)
//! and Cohere (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`)
//! request formats with vectors seeded from a SHA-256 of each text, normalised when the model
//! family normalises (Titan v2 unless `normalize` is false, Cohere always). The
//! `X-Amzn-Bedrock-Input-Token-Count` header holds the number of words in the input texts.

pub mod base64;
pub mod catalog;
pub mod clock;
pub mod control_plane;
pub mod converse;
pub mod converse_stream;
pub mod credentials;
pub mod embeddings;
pub mod error;
pub mod eventstream;
pub mod faults;
pub mod guardrails;
pub mod media;
pub mod observations;
pub mod prompt_cache;
pub mod reasoning;
pub mod request_metadata;
pub mod routing;
mod server;
pub mod sigv4;
pub mod tools;
pub mod uri_encoding;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

pub use credentials::{Registered, TemporaryCredentials};
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
    credentials: Arc<credentials::CredentialStore>,
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
        let credentials = Arc::new(credentials::CredentialStore::default());
        let state = web::Data::new(server::AppState::new(
            config,
            Arc::clone(&recorder),
            Arc::clone(&credentials),
        ));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(server::handle))
        })
        .workers(workers)
        .on_connect(prepare_connection)
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
            credentials,
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

    /// Accepts `credentials` (with their session token, until their expiration) from now on,
    /// as `POST /_emulator/credentials` does.
    pub fn register_credentials(&self, credentials: TemporaryCredentials) -> Registered {
        self.credentials.register(credentials)
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

/// Small frames (stream events, SSE chunks) must leave at once: Nagle's
/// algorithm against a delayed ACK would hold them for ~40 ms. The socket is
/// also kept for the `reset` directive.
fn prepare_connection(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = stream.set_nodelay(true);
    }
    server::keep_connection_socket(connection, data);
}
