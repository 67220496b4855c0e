//! Request ids, access logs, request metrics and API-key authentication.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};

use crate::auth::bearer_token;
use crate::error::ApiError;
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

    let mut response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(request_id = %request_id, %error, "request failed before a response");
            return Err(error);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
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

pub async fn require_api_key(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let authorised = match request.app_data::<web::Data<AppState>>() {
        Some(state) => request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .is_some_and(|key| state.keys.is_valid(key)),
        None => false,
    };
    if !authorised {
        let response = ApiError::Unauthorized.error_response();
        return Ok(request.into_response(response).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
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
