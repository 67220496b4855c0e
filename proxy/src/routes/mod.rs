//! The HTTP routes: the OpenAI API under `/v1` and `/api/v1`, probes at the root.

pub mod chat;
pub mod health;
pub mod models;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::middleware::require_api_key;

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
