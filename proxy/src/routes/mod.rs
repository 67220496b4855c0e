//! The HTTP routes: the OpenAI API under `/v1` and `/api/v1`, probes at the root.

pub mod chat;
pub mod embeddings;
pub mod health;
pub mod models;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::middleware::require_api_key;
use crate::state::AppState;

/// Prefixes the OpenAI API is served under; `/api/v1` keeps URLs written for
/// bedrock-access-gateway working.
pub const API_PREFIXES: [&str; 2] = ["/v1", "/api/v1"];

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz));
    for prefix in API_PREFIXES {
        config.service(
            web::scope(prefix)
                .wrap(actix_web::middleware::from_fn(require_api_key))
                .service(
                    web::resource("/models")
                        .route(web::get().to(models::list))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/models/{id:.+}")
                        .route(web::get().to(models::retrieve))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/embeddings")
                        .route(web::post().to(embeddings::create))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/chat/completions")
                        .route(web::post().to(chat::completions))
                        .default_service(web::to(method_not_allowed)),
                )
                .default_service(web::to(not_found)),
        );
    }
    config.default_service(web::to(not_found));
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(format!(
        "{} {}",
        request.method(),
        request.path()
    )))
}

async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(request.method().to_string()))
}

/// The body of a new API request: refused while draining, limited in size.
pub async fn read_api_request(
    http_request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let timeout = state.limits.body_timeout;
    tokio::time::timeout(
        timeout,
        read_body(http_request, payload, state.limits.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout {
        seconds: timeout.as_secs(),
    })?
}

/// Reads the body up to the limit, answering 413 beyond it without reading
/// (or buffering) the rest.
async fn read_body(
    http_request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = http_request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::invalid(format!("The request body could not be read: {error}"), None)
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
