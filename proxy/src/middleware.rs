//! Request ids, access logs, request metrics, API-key authentication and
//! per-key limits.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;

use crate::auth::{KeyId, bearer_token};
use crate::error::ApiError;
use crate::key_limits::{Refusal, StreamSlot};
use crate::openai::{ErrorBody, ErrorEnvelope};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, from `x-request-id` or generated.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of the request being served (empty outside the middleware).
    pub fn of(request: &actix_web::HttpRequest) -> String {
        request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default()
    }
}

/// A client-supplied id is honoured only when it is short and printable, so it
/// cannot be used to forge log lines.
pub fn accept_request_id(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let acceptable = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\');
    acceptable.then(|| value.to_owned())
}

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = accept_request_id(
        request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok()),
    )
    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let method = request.method().as_str().to_owned();
    let in_flight = state
        .as_ref()
        .map(|state| InFlightRequest::enter(&state.metrics.http_requests_in_flight));

    let mut response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(request_id = %request_id, %error, "request failed before a response");
            return Err(error);
        }
    };
    drop(in_flight);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // While draining, clients are sent to reconnect (to another replica).
    if state.as_ref().is_some_and(|state| state.is_draining()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status();
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state
            .metrics
            .http_requests
            .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
            .inc();
        state
            .metrics
            .http_request_duration
            .with_label_values(&[route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

/// Counts a request as in flight until its handler has answered (or the
/// client went away and the handler was dropped).
struct InFlightRequest(prometheus::IntGauge);

impl InFlightRequest {
    fn enter(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The key a request was authenticated with, for the handlers that claim a
/// stream slot.
#[derive(Debug, Clone, Copy)]
struct AuthenticatedKey(KeyId);

/// Authenticates the bearer key and applies the key's request limit. A
/// stream slot a handler claimed ([`claim_stream_slot`]) is moved into the
/// response body, so it is held until the stream ends, fails or is dropped.
pub async fn require_api_key<B>(
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<SlotHoldingBody<B>>>, Error>
where
    B: MessageBody + Unpin,
{
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let key = state.as_ref().and_then(|state| {
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .and_then(|key| state.keys.authenticate(key))
    });
    let (Some(state), Some(key)) = (state, key) else {
        let response = ApiError::Unauthorized.error_response();
        return Ok(request.into_response(response).map_into_right_body());
    };
    if let Some(limiter) = &state.key_limiter {
        if let Err(refusal) = limiter.admit_request(key, Instant::now()) {
            let response = refuse(&state, &refusal);
            return Ok(request.into_response(response).map_into_right_body());
        }
        request.extensions_mut().insert(AuthenticatedKey(key));
    }
    let response = next.call(request).await?;
    let slot = response.request().extensions_mut().remove::<StreamSlot>();
    Ok(response
        .map_body(|_, body| SlotHoldingBody { body, slot })
        .map_into_left_body())
}

/// Takes a stream slot of the request's key for the response being made.
/// Returns the refusal to send instead when the key has no slot left.
pub fn claim_stream_slot(request: &HttpRequest) -> Option<HttpResponse> {
    let state = request.app_data::<web::Data<AppState>>()?;
    let limiter = state.key_limiter.as_ref()?;
    let AuthenticatedKey(key) = request.extensions().get::<AuthenticatedKey>().copied()?;
    match limiter.claim_stream(key, Instant::now()) {
        Ok(slot) => {
            request.extensions_mut().insert(slot);
            None
        }
        Err(refusal) => Some(refuse(state, &refusal)),
    }
}

/// A 429 as OpenAI words its rate limits: `type` names what ran out.
fn refuse(state: &AppState, refusal: &Refusal) -> HttpResponse {
    state
        .metrics
        .key_limit_rejections
        .with_label_values(&[refusal.metric_label()])
        .inc();
    tracing::debug!(
        limit = refusal.metric_label(),
        "request refused by a per-key limit"
    );
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, refusal.retry_after_seconds()))
        .insert_header(("retry-after-ms", refusal.retry_after_millis()))
        .json(ErrorEnvelope {
            error: ErrorBody {
                message: refusal.message(),
                kind: "requests",
                param: None,
                code: Some("rate_limit_exceeded".into()),
            },
        })
}

/// A response body that holds a key's stream slot until the body has been
/// sent in full or dropped (the client went away).
pub struct SlotHoldingBody<B> {
    body: B,
    slot: Option<StreamSlot>,
}

impl<B: MessageBody + Unpin> MessageBody for SlotHoldingBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(None) = polled {
            this.slot = None;
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_sanitised() {
        assert_eq!(accept_request_id(Some("abc-123")), Some("abc-123".into()));
        assert_eq!(accept_request_id(Some(" abc ")), Some("abc".into()));
        assert_eq!(accept_request_id(Some("")), None);
        assert_eq!(accept_request_id(Some("has space")), None);
        assert_eq!(accept_request_id(Some("quote\"d")), None);
        assert_eq!(accept_request_id(Some("new\nline")), None);
        assert_eq!(accept_request_id(Some(&"x".repeat(129))), None);
        assert_eq!(accept_request_id(None), None);
    }
}
