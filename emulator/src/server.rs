//! The actix-web glue: one handler that authenticates, routes and answers every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;

use crate::EmulatorConfig;
use crate::catalog::{Catalog, ModelFamily};
use crate::clock;
use crate::control_plane;
use crate::converse;
use crate::converse_stream::{self, Step};
use crate::credentials::{self, CredentialStore};
use crate::embeddings;
use crate::error::{Error, ErrorKind};
use crate::eventstream;
use crate::faults::ResetPoint;
use crate::observations::Recorder;
use crate::prompt_cache::PromptCache;
use crate::routing::{self, Operation, Route};
use crate::sigv4::{self, ExpectedCredentials, SignableRequest};
use crate::uri_encoding::parse_query;

const SIGNING_NAME: &str = "bedrock";
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

/// State shared by every worker.
#[derive(Debug)]
pub struct AppState {
    pub config: EmulatorConfig,
    pub catalog: Catalog,
    pub recorder: Arc<Recorder>,
    pub credentials: Arc<CredentialStore>,
    pub prompt_cache: PromptCache,
    request_counter: AtomicU64,
    request_id_seed: u64,
}

impl AppState {
    pub fn new(
        config: EmulatorConfig,
        recorder: Arc<Recorder>,
        credentials: Arc<CredentialStore>,
    ) -> AppState {
        let catalog = Catalog::with_defaults(&config.region);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        AppState {
            config,
            catalog,
            recorder,
            credentials,
            prompt_cache: PromptCache::default(),
            request_counter: AtomicU64::new(0),
            request_id_seed: seed,
        }
    }

    fn next_request_id(&self) -> String {
        let sequence = self.request_counter.fetch_add(1, Ordering::Relaxed);
        request_id(self.request_id_seed, sequence)
    }
}

fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// A version-4-shaped UUID derived from a seed and a sequence number.
fn request_id(seed: u64, sequence: u64) -> String {
    let high = mix(seed ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let low = mix(high ^ sequence);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        0x8000 | ((low >> 48) & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((REQUEST_ID_HEADER, request_id))
        .body(body.to_string())
}

fn error_response(error: &Error, request_id: &str) -> HttpResponse {
    let (kind, message) = error.as_service();
    let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((REQUEST_ID_HEADER, request_id))
        .insert_header(("x-amzn-ErrorType", kind.error_type_header()))
        .body(serde_json::json!({ "message": message }).to_string())
}

async fn read_body(mut payload: web::Payload) -> Result<Bytes, Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            Error::validation(format!("Failed to read the request body: {error}"))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Error::validation(format!(
                "The request body exceeds the maximum size of {MAX_BODY_BYTES} bytes."
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn collect_headers(request: &HttpRequest) -> Vec<(String, String)> {
    request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Entry point for every request.
pub async fn handle(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = state.next_request_id();
    let method = request.method().as_str().to_string();
    let raw_path = request.uri().path().to_string();
    let Some(route) = routing::route(&method, &raw_path) else {
        tracing::debug!(%method, path = %raw_path, "unknown operation");
        return error_response(
            &Error::service(
                ErrorKind::UnknownOperation,
                ErrorKind::UnknownOperation.default_message(),
            ),
            &request_id,
        );
    };
    if route.operation == Operation::Observations {
        let observed = serde_json::to_value(state.recorder.snapshot()).unwrap_or(Value::Null);
        return json_response(StatusCode::OK, &observed, &request_id);
    }
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(error) => return error_response(&error, &request_id),
    };
    if route.operation == Operation::RegisterCredentials {
        return register_credentials(&state, &body, &request_id);
    }
    let raw_query = request.uri().query().unwrap_or("").to_string();
    let headers = collect_headers(&request);
    let signable = SignableRequest {
        method: &method,
        raw_path: &raw_path,
        raw_query: &raw_query,
        headers: &headers,
        body: &body,
    };
    let presented = sigv4::presented_identity(&signable);
    let acceptance = state.credentials.acceptance_for(
        &state.config,
        presented
            .as_ref()
            .map(|identity| identity.access_key_id.as_str()),
    );
    let expected = ExpectedCredentials {
        access_key_id: &acceptance.access_key_id,
        secret_access_key: &acceptance.secret_access_key,
        session_token: acceptance.session_token.as_deref(),
        expires_at: acceptance.expires_at,
        region: &state.config.region,
        service: SIGNING_NAME,
    };
    let verified = sigv4::verify(&signable, &expected, clock::unix_now());
    let operation = route.operation.name();
    state
        .recorder
        .record(operation, presented.as_ref(), verified.is_err());
    if let Err(error) = verified {
        tracing::info!(operation, %error, "rejected request");
        return error_response(&error, &request_id);
    }
    let response = match answer(&state, route, &raw_query, &body, started, &request_id).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(operation, %error, "answered with an exception");
            error_response(&error, &request_id)
        }
    };
    if response.extensions().contains::<ResetConnection>() {
        arm_reset(&request);
    }
    tracing::debug!(
        operation,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "served"
    );
    response
}

async fn answer(
    state: &AppState,
    route: Route,
    raw_query: &str,
    body: &Bytes,
    started: Instant,
    request_id: &str,
) -> Result<HttpResponse, Error> {
    let label = route.label.unwrap_or_default();
    match route.operation {
        Operation::Converse => converse_unary(state, &label, body, started, request_id).await,
        Operation::ConverseStream => {
            converse_streaming(state, &label, body, started, request_id).await
        }
        Operation::InvokeModel => invoke_model(state, &label, body, started, request_id).await,
        Operation::ListFoundationModels => {
            let body =
                control_plane::list_foundation_models(&state.catalog, &parse_query(raw_query))?;
            Ok(json_response(StatusCode::OK, &body, request_id))
        }
        Operation::GetFoundationModel => {
            let body = control_plane::get_foundation_model(&state.catalog, &label)?;
            Ok(json_response(StatusCode::OK, &body, request_id))
        }
        Operation::ListInferenceProfiles => {
            let body =
                control_plane::list_inference_profiles(&state.catalog, &parse_query(raw_query))?;
            Ok(json_response(StatusCode::OK, &body, request_id))
        }
        Operation::GetInferenceProfile => {
            let body = control_plane::get_inference_profile(&state.catalog, &label)?;
            Ok(json_response(StatusCode::OK, &body, request_id))
        }
        Operation::Observations | Operation::RegisterCredentials => Err(Error::service(
            ErrorKind::UnknownOperation,
            ErrorKind::UnknownOperation.default_message(),
        )),
    }
}

/// `POST /_emulator/credentials`: accepts a temporary credential set from now on.
fn register_credentials(state: &AppState, body: &[u8], request_id: &str) -> HttpResponse {
    match credentials::parse_registration(body) {
        Ok(temporary) => {
            let registered = state.credentials.register(temporary);
            tracing::info!(
                access_key_id = %registered.access_key_id,
                expiration = %registered.expiration,
                "registered temporary credentials"
            );
            let body = serde_json::to_value(&registered).unwrap_or(Value::Null);
            json_response(StatusCode::OK, &body, request_id)
        }
        Err(error) => error_response(&error, request_id),
    }
}

fn plan_chat(
    state: &AppState,
    model_identifier: &str,
    body: &[u8],
) -> Result<converse::ReplyPlan, Error> {
    let model = state.catalog.resolve_for_invocation(model_identifier)?;
    if model.family != ModelFamily::Chat {
        return Err(Error::validation(
            "This action doesn't support the model that you provided. Try again with a supported text or chat model.",
        ));
    }
    let request = converse::parse_request(body)?;
    let invocation = converse::Invocation {
        model_id: model.id,
        prompt_cache: &state.prompt_cache,
    };
    let plan = converse::plan_reply(&request, &invocation)?;
    if let Some(metadata) = &request.request_metadata {
        state.recorder.record_request_metadata(metadata);
    }
    if !plan.image_sha256.is_empty() {
        state.recorder.record_images(&plan.image_sha256);
    }
    Ok(plan)
}

async fn sleep_if_needed(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn scripted_error(kind: ErrorKind) -> Error {
    Error::service(kind, kind.default_message())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A duplicate of a connection's socket, taken when the connection is
/// accepted, so that a scripted reset can make its close send a TCP reset.
#[cfg(unix)]
pub struct ConnectionSocket(std::os::fd::OwnedFd);

/// Keeps a [`ConnectionSocket`] in the connection's data (`on_connect`).
pub fn keep_connection_socket(
    connection: &dyn std::any::Any,
    data: &mut actix_web::dev::Extensions,
) {
    #[cfg(unix)]
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        match stream.as_fd().try_clone_to_owned() {
            Ok(socket) => {
                data.insert(ConnectionSocket(socket));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot keep the connection's socket; a scripted reset will close it normally");
            }
        }
    }
}

/// Marks a response whose connection is to be reset rather than closed.
struct ResetConnection;

/// With a zero linger time, closing the socket sends RST instead of FIN; the
/// close happens when the response body fails and actix drops the connection.
fn arm_reset(request: &HttpRequest) {
    #[cfg(unix)]
    if let Some(ConnectionSocket(socket)) = request.conn_data::<ConnectionSocket>()
        && let Err(error) = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO))
    {
        tracing::warn!(%error, "cannot arm the scripted reset; the connection closes normally");
    }
}

fn scripted_reset() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "scripted connection reset",
    )
}

/// A response that resets the connection before any byte of it is sent.
fn reset_before_response() -> HttpResponse {
    let failing = futures_util::stream::once(async { Err::<Bytes, _>(scripted_reset()) });
    let mut response = HttpResponse::Ok().streaming(failing);
    response.extensions_mut().insert(ResetConnection);
    response
}

async fn converse_unary(
    state: &AppState,
    model_identifier: &str,
    body: &[u8],
    started: Instant,
    request_id: &str,
) -> Result<HttpResponse, Error> {
    let plan = plan_chat(state, model_identifier, body)?;
    sleep_if_needed(plan.faults.delay_first).await;
    if plan.faults.reset.is_some() {
        return Ok(reset_before_response());
    }
    if let Some(kind) = plan.faults.error {
        return Err(scripted_error(kind));
    }
    let body = converse::response_body(&plan, elapsed_ms(started));
    Ok(json_response(StatusCode::OK, &body, request_id))
}

struct StreamState {
    plan: converse::ReplyPlan,
    step: Step,
    first: bool,
    started: Instant,
    events: usize,
    deltas: usize,
}

async fn converse_streaming(
    state: &AppState,
    model_identifier: &str,
    body: &[u8],
    started: Instant,
    request_id: &str,
) -> Result<HttpResponse, Error> {
    let plan = plan_chat(state, model_identifier, body)?;
    if plan.faults.reset == Some(ResetPoint::BeforeResponse) {
        sleep_if_needed(plan.faults.delay_first).await;
        return Ok(reset_before_response());
    }
    if let Some(kind) = plan.faults.error {
        sleep_if_needed(plan.faults.delay_first).await;
        return Err(scripted_error(kind));
    }
    let resets = plan.faults.reset.is_some();
    let initial = StreamState {
        plan,
        step: Step::MessageStart,
        first: true,
        started,
        events: 0,
        deltas: 0,
    };
    let events = futures_util::stream::unfold(initial, |mut state| async move {
        let (emit, next) = converse_stream::advance(&state.plan, state.step)?;
        let delay = if state.first {
            state.plan.faults.delay_first
        } else {
            state.plan.faults.delay_between
        };
        if let Some(reset) = state.plan.faults.reset
            && reset.is_due(state.events, state.deltas)
        {
            // Pending once, so the frames sent so far leave before the reset.
            tokio::task::yield_now().await;
            sleep_if_needed(delay).await;
            state.step = Step::Done;
            return Some((Err(scripted_reset()), state));
        }
        sleep_if_needed(delay).await;
        state.first = false;
        state.step = next;
        state.events += 1;
        if matches!(emit, converse_stream::Emit::Delta { .. }) {
            state.deltas += 1;
        }
        let frame = converse_stream::encode(&state.plan, emit, elapsed_ms(state.started));
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(frame)), state))
    });
    let mut response = HttpResponse::Ok()
        .content_type(eventstream::CONTENT_TYPE)
        .insert_header((REQUEST_ID_HEADER, request_id))
        .streaming(events);
    if resets {
        response.extensions_mut().insert(ResetConnection);
    }
    Ok(response)
}

async fn invoke_model(
    state: &AppState,
    model_identifier: &str,
    body: &[u8],
    started: Instant,
    request_id: &str,
) -> Result<HttpResponse, Error> {
    let model = state.catalog.resolve_for_invocation(model_identifier)?;
    let reply = embeddings::invoke(model.family, model.id, body)?;
    sleep_if_needed(reply.faults.delay_first).await;
    if let Some(kind) = reply.faults.error {
        return Err(scripted_error(kind));
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((REQUEST_ID_HEADER, request_id))
        .insert_header((
            "X-Amzn-Bedrock-Input-Token-Count",
            reply.input_token_count.to_string(),
        ))
        .insert_header((
            "X-Amzn-Bedrock-Invocation-Latency",
            elapsed_ms(started).to_string(),
        ))
        .body(reply.body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let first = request_id(42, 0);
        let second = request_id(42, 1);
        assert_ne!(first, second);
        for id in [first, second] {
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                vec![8, 4, 4, 4, 12]
            );
            assert!(groups[2].starts_with('4'));
        }
    }

    #[test]
    fn error_responses_carry_aws_headers() {
        let response = error_response(&Error::service(ErrorKind::Throttling, "slow down"), "rid");
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response.headers().get("x-amzn-errortype").unwrap(),
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
        assert_eq!(response.headers().get("x-amzn-requestid").unwrap(), "rid");
    }
}
