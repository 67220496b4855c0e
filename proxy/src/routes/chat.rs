//! `POST /chat/completions` over Converse and ConverseStream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::ConverseStreamOutput;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use bytes::Bytes;
use serde::Serialize;

use crate::catalog::ResolvedModel;
use crate::error::{ApiError, UpstreamError};
use crate::metrics::InFlightStream;
use crate::middleware::RequestId;
use crate::openai::{ChatCompletionRequest, Usage};
use crate::routes::read_api_request;
use crate::state::AppState;
use crate::translate::bedrock_error;
use crate::translate::guardrail::Guardrail;
use crate::translate::request::{ConverseInput, parse_chat_request, to_converse_input};
use crate::translate::response::{CompletionMeta, to_chat_completion};
use crate::translate::stream::StreamTranslator;

pub async fn completions(
    http_request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_api_request(&http_request, payload, &state).await?;
    let mut request = parse_chat_request(&body)?;
    let model = state.catalog.resolve(&request.model).await?;
    state.images.inline_image_urls(&mut request).await?;
    let input = to_converse_input(&request, &model.bedrock_id, &state.translation)?;
    let meta = CompletionMeta {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        model: request.model.clone(),
        response_tool: input.response_tool.clone(),
    };
    let request_id = RequestId::of(&http_request);
    if request.stream == Some(true) {
        if let Some(refusal) = crate::middleware::claim_stream_slot(&http_request) {
            return Ok(refusal);
        }
        stream(state, &request, input, model, meta, request_id).await
    } else {
        complete(state, input, model, meta, request_id).await
    }
}

pub(crate) fn upstream_failure(
    state: &AppState,
    error: UpstreamError,
    request_id: &str,
) -> ApiError {
    state
        .metrics
        .upstream_errors
        .with_label_values(&[error.code.as_str()])
        .inc();
    tracing::warn!(request_id, code = %error.code, status = error.status, message = %error.message, "Bedrock call failed");
    ApiError::Upstream(error)
}

async fn complete(
    state: web::Data<AppState>,
    input: ConverseInput,
    model: ResolvedModel,
    meta: CompletionMeta,
    request_id: String,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = state
        .clients
        .runtime
        .converse()
        .model_id(&model.bedrock_id)
        .set_guardrail_config(state.guardrail.as_ref().map(Guardrail::for_converse))
        .set_system((!input.system.is_empty()).then_some(input.system))
        .set_messages(Some(input.messages))
        .set_inference_config(input.inference)
        .set_tool_config(input.tool_config)
        .set_additional_model_request_fields(input.additional_fields)
        .set_request_metadata(input.request_metadata)
        .send()
        .await;
    state
        .metrics
        .bedrock_call_duration
        .with_label_values(&[model.metric_label.as_str(), "Converse"])
        .observe(started.elapsed().as_secs_f64());
    let output = result.map_err(|error| {
        upstream_failure(
            &state,
            bedrock_error::from_sdk_error(&error, state.limits.retry_after_seconds),
            &request_id,
        )
    })?;
    let completion = to_chat_completion(&output, &meta);
    state
        .metrics
        .record_usage(&model.metric_label, &completion.usage);
    Ok(HttpResponse::Ok().json(completion))
}

async fn stream(
    state: web::Data<AppState>,
    request: &ChatCompletionRequest,
    input: ConverseInput,
    model: ResolvedModel,
    meta: CompletionMeta,
    request_id: String,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let output = state
        .clients
        .runtime
        .converse_stream()
        .model_id(&model.bedrock_id)
        .set_guardrail_config(state.guardrail.as_ref().map(Guardrail::for_stream))
        .set_system((!input.system.is_empty()).then_some(input.system))
        .set_messages(Some(input.messages))
        .set_inference_config(input.inference)
        .set_tool_config(input.tool_config)
        .set_additional_model_request_fields(input.additional_fields)
        .set_request_metadata(input.request_metadata)
        .send()
        .await
        .map_err(|error| {
            upstream_failure(
                &state,
                bedrock_error::from_sdk_error(&error, state.limits.retry_after_seconds),
                &request_id,
            )
        })?;

    let relay = StreamRelay {
        in_flight: InFlightStream::enter(&state.metrics.streams_in_flight),
        receiver: output.stream,
        translator: StreamTranslator::new(meta, include_usage),
        pending: VecDeque::new(),
        finished: false,
        first_token_seen: false,
        started,
        model,
        request_id,
        state,
    };
    let body = futures_util::stream::unfold(relay, |mut relay| async move {
        relay
            .next_bytes()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), relay))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Moves events from Bedrock to the client as server-sent events. Dropping it
/// (the client went away) drops the Bedrock response and so cancels the call.
struct StreamRelay {
    #[allow(dead_code)]
    in_flight: InFlightStream,
    receiver: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
    translator: StreamTranslator,
    pending: VecDeque<Bytes>,
    finished: bool,
    first_token_seen: bool,
    started: Instant,
    model: ResolvedModel,
    request_id: String,
    state: web::Data<AppState>,
}

pub fn sse_event(payload: &impl Serialize) -> Bytes {
    let mut line = b"data: ".to_vec();
    // Serialising the gateway's own types cannot fail.
    let _ = serde_json::to_writer(&mut line, payload);
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

impl StreamRelay {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            if self.finished {
                return None;
            }
            let idle_timeout = self.state.limits.stream_idle_timeout;
            match tokio::time::timeout(idle_timeout, self.receiver.recv()).await {
                Ok(Ok(Some(event))) => {
                    let chunks = self.translator.on_event(&event);
                    for chunk in &chunks {
                        if !self.first_token_seen
                            && chunk.choices.iter().any(|choice| {
                                choice
                                    .delta
                                    .content
                                    .as_deref()
                                    .is_some_and(|text| !text.is_empty())
                            })
                        {
                            self.first_token_seen = true;
                            self.state
                                .metrics
                                .time_to_first_token
                                .with_label_values(&[self.model.metric_label.as_str()])
                                .observe(self.started.elapsed().as_secs_f64());
                        }
                        self.pending.push_back(sse_event(chunk));
                    }
                }
                Ok(Ok(None)) => {
                    for chunk in self.translator.finish() {
                        self.pending.push_back(sse_event(&chunk));
                    }
                    self.pending.push_back(Bytes::from_static(SSE_DONE));
                    self.end(None);
                }
                Ok(Err(error)) => {
                    let upstream = bedrock_error::from_sdk_error(
                        &error,
                        self.state.limits.retry_after_seconds,
                    );
                    self.fail(upstream);
                }
                Err(_) => self.fail(UpstreamError {
                    status: 504,
                    code: "BedrockStreamIdle".into(),
                    message: format!(
                        "Bedrock sent nothing for {} seconds; the stream was ended.",
                        idle_timeout.as_secs()
                    ),
                    retry_after_seconds: None,
                }),
            }
        }
    }

    /// Ends the stream with an OpenAI error event, which the OpenAI SDKs raise
    /// as an exception, instead of going silent.
    fn fail(&mut self, upstream: UpstreamError) {
        let error = upstream_failure(&self.state, upstream, &self.request_id);
        self.pending.push_back(sse_event(&error.envelope()));
        self.end(Some(&error));
    }

    fn end(&mut self, error: Option<&ApiError>) {
        self.finished = true;
        let label = self.model.metric_label.as_str();
        self.state
            .metrics
            .bedrock_call_duration
            .with_label_values(&[label, "ConverseStream"])
            .observe(self.started.elapsed().as_secs_f64());
        let usage: Usage = self.translator.usage().unwrap_or_default();
        self.state.metrics.record_usage(label, &usage);
        tracing::debug!(
            request_id = %self.request_id,
            failed = error.is_some(),
            output_tokens = usage.completion_tokens,
            "stream ended"
        );
    }
}
