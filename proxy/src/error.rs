//! The proxy's one error type and its OpenAI-shaped rendering.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::openai::{ErrorBody, ErrorEnvelope};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'.")]
    Unauthorized,
    #[error("The model '{0}' does not exist or is not served by this gateway.")]
    ModelNotFound(String),
    #[error("Unknown route: {0}")]
    RouteNotFound(String),
    #[error("Method {0} is not allowed on this route.")]
    MethodNotAllowed(String),
    #[error("The request body exceeds the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("The request body did not arrive within {seconds} seconds.")]
    BodyTimeout { seconds: u64 },
    #[error("{0}")]
    Upstream(UpstreamError),
    #[error("The gateway is shutting down; retry on another replica.")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

/// An error reported by Bedrock (or by the way to it), already mapped to the
/// status the client should see.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    pub status: u16,
    /// The Bedrock exception name, e.g. `ThrottlingException`.
    pub code: String,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Upstream(upstream) => {
                StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI `error.type` for this error.
    fn kind(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 if matches!(self, ApiError::ModelNotFound(_)) => "invalid_request_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    fn code(&self) -> Option<String> {
        match self {
            ApiError::InvalidRequest { .. } => None,
            ApiError::Unauthorized => Some("invalid_api_key".into()),
            ApiError::ModelNotFound(_) => Some("model_not_found".into()),
            ApiError::RouteNotFound(_) => Some("unknown_url".into()),
            ApiError::MethodNotAllowed(_) => Some("method_not_allowed".into()),
            ApiError::PayloadTooLarge { .. } => Some("request_too_large".into()),
            ApiError::BodyTimeout { .. } => Some("request_timeout".into()),
            ApiError::Upstream(upstream) => Some(upstream.code.clone()),
            ApiError::ShuttingDown => Some("shutting_down".into()),
            ApiError::Internal(_) => Some("internal_error".into()),
        }
    }

    fn param(&self) -> Option<String> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.clone(),
            ApiError::ModelNotFound(_) => Some("model".into()),
            _ => None,
        }
    }

    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                message: self.to_string(),
                kind: self.kind(),
                param: self.param(),
                code: self.code(),
            },
        }
    }

    /// A short label for metrics, never derived from user input.
    pub fn metric_label(&self) -> &str {
        match self {
            ApiError::Upstream(upstream) => &upstream.code,
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let ApiError::Upstream(UpstreamError {
            retry_after_seconds: Some(seconds),
            ..
        }) = self
        {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(*seconds)));
        }
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self.envelope())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types_follow_openai() {
        let cases = [
            (
                ApiError::invalid("bad", Some("messages")),
                400,
                "invalid_request_error",
            ),
            (ApiError::Unauthorized, 401, "authentication_error"),
            (
                ApiError::ModelNotFound("x".into()),
                404,
                "invalid_request_error",
            ),
            (ApiError::RouteNotFound("/x".into()), 404, "not_found_error"),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "invalid_request_error",
            ),
            (ApiError::ShuttingDown, 503, "api_error"),
            (ApiError::Internal("boom".into()), 500, "api_error"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.envelope().error.kind, kind, "{error:?}");
        }
    }

    #[test]
    fn upstream_throttling_carries_retry_after() {
        let error = ApiError::Upstream(UpstreamError {
            status: 429,
            code: "ThrottlingException".into(),
            message: "Too many requests".into(),
            retry_after_seconds: Some(3),
        });
        let response = error.error_response();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers().get("retry-after").unwrap(), "3");
        let envelope = error.envelope();
        assert_eq!(envelope.error.kind, "rate_limit_error");
        assert_eq!(envelope.error.code.as_deref(), Some("ThrottlingException"));
    }

    #[test]
    fn invalid_request_names_the_param() {
        let envelope = ApiError::invalid("n must be 1", Some("n")).envelope();
        let json = serde_json::to_value(envelope).unwrap();
        assert_eq!(json["error"]["param"], "n");
        assert_eq!(json["error"]["message"], "n must be 1");
        assert!(json["error"]["code"].is_null());
    }
}
