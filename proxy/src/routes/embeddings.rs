//! `POST /embeddings` over InvokeModel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_bedrockruntime::error::BoxError;
use aws_smithy_types::Blob;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::routes::chat::upstream_failure;
use crate::routes::read_api_request;
use crate::state::AppState;
use crate::translate::bedrock_error;
use crate::translate::embeddings::{
    EncodingFormat, INPUT_TOKEN_COUNT_HEADER, KNOWN_MODELS, estimated_tokens, family_of,
    header_token_count, input_texts, invoke_bodies, parse_reply, parse_request, to_response,
};

/// InvokeModel calls in flight for one request (Titan embeds one text per call).
const CONCURRENT_CALLS: usize = 8;

const NO_COUNT: u64 = u64::MAX;

/// Keeps the input token count Bedrock sends in a header of the InvokeModel
/// response, which the SDK's output type does not carry (Cohere's body has none).
#[derive(Debug, Clone)]
struct InputTokenHeader(Arc<AtomicU64>);

impl InputTokenHeader {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(NO_COUNT)))
    }

    fn count(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|count| *count != NO_COUNT)
    }
}

impl Intercept for InputTokenHeader {
    fn name(&self) -> &'static str {
        "InputTokenHeader"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let count = header_token_count(context.response().headers().get(INPUT_TOKEN_COUNT_HEADER));
        // The last attempt's response is the one deserialised.
        self.0.store(count.unwrap_or(NO_COUNT), Ordering::Relaxed);
        Ok(())
    }
}

pub async fn create(
    http_request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_api_request(&http_request, payload, &state).await?;
    let request = parse_request(&body)?;
    let bedrock_id = state
        .catalog
        .alias(&request.model)
        .unwrap_or(&request.model)
        .to_owned();
    let family = match family_of(&bedrock_id) {
        Some(family) if state.catalog.allows(&bedrock_id) => family,
        _ => {
            let is_chat_model = state
                .catalog
                .cached()
                .is_some_and(|snapshot| snapshot.get(&request.model).is_some());
            return Err(if is_chat_model {
                ApiError::invalid(
                    format!(
                        "'{}' is a chat model, not an embedding model.",
                        request.model
                    ),
                    Some("model"),
                )
            } else {
                ApiError::ModelNotFound(request.model.clone())
            });
        }
    };
    let metric_label = if state.catalog.alias(&request.model).is_some()
        || KNOWN_MODELS.contains(&request.model.as_str())
    {
        request.model.clone()
    } else {
        "unlisted".to_owned()
    };
    let texts = input_texts(&request.input)?;
    let bodies = invoke_bodies(
        family,
        &texts,
        request.dimensions,
        request.input_type.as_deref(),
    )?;
    let request_id = RequestId::of(&http_request);

    let started = Instant::now();
    let replies: Vec<(Vec<Vec<f32>>, Option<u64>)> = futures_util::stream::iter(bodies)
        .map(|(body, expected)| {
            let state = state.clone();
            let bedrock_id = bedrock_id.clone();
            let request_id = request_id.clone();
            async move {
                let header = InputTokenHeader::new();
                let output = state
                    .clients
                    .runtime
                    .invoke_model()
                    .model_id(&bedrock_id)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body.to_string()))
                    .customize()
                    .interceptor(header.clone())
                    .send()
                    .await
                    .map_err(|error| {
                        upstream_failure(
                            &state,
                            bedrock_error::from_sdk_error(&error, state.limits.retry_after_seconds),
                            &request_id,
                        )
                    })?;
                let (vectors, body_count) = parse_reply(family, output.body().as_ref(), expected)?;
                Ok::<_, ApiError>((vectors, body_count.or(header.count())))
            }
        })
        .buffered(CONCURRENT_CALLS)
        .try_collect()
        .await?;
    state
        .metrics
        .bedrock_call_duration
        .with_label_values(&[metric_label.as_str(), "InvokeModel"])
        .observe(started.elapsed().as_secs_f64());

    let counted: Option<u64> = replies.iter().map(|(_, tokens)| *tokens).sum();
    let tokens = counted.unwrap_or_else(|| estimated_tokens(&texts));
    state
        .metrics
        .tokens
        .with_label_values(&[metric_label.as_str(), "input"])
        .inc_by(tokens);
    let vectors: Vec<Vec<f32>> = replies
        .into_iter()
        .flat_map(|(vectors, _)| vectors)
        .collect();
    Ok(HttpResponse::Ok().json(to_response(
        &request.model,
        &vectors,
        request.encoding_format.unwrap_or(EncodingFormat::Float),
        tokens,
    )))
}
