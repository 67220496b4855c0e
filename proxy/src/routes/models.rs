//! `GET /models` and `GET /models/{id}`.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::openai::ModelList;
use crate::state::AppState;

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let snapshot = state.catalog.snapshot().await?;
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data: snapshot.models.clone(),
    }))
}

pub async fn retrieve(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.catalog.snapshot().await?;
    match snapshot.get(&id) {
        Some(model) => Ok(HttpResponse::Ok().json(model)),
        None => Err(ApiError::ModelNotFound(id.into_inner())),
    }
}
