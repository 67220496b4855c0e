//! Liveness and readiness probes (no API key needed).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when not draining and AWS credentials can be obtained.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "draining"}));
    }
    match state.credentials.check().await {
        Ok(()) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "models_cached": state.catalog.cached().is_some(),
        })),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not ready", "reason": reason})),
    }
}
