//! Drives the emulator with the real AWS SDK for Rust.

use std::net::TcpListener;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_bedrock::types::{InferenceProfileType, InferenceType, ModelModality};
use aws_sdk_bedrockruntime::Client as RuntimeClient;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseOutput, ConverseStreamOutput,
    InferenceConfiguration, Message, StopReason, SystemContentBlock,
};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const SONNET_PROFILE: &str = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";

async fn start(config: EmulatorConfig) -> RunningEmulator {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    RunningEmulator::start(config, listener).await.unwrap()
}

fn credentials_for(config: &EmulatorConfig) -> Credentials {
    Credentials::new(
        config.access_key_id.clone(),
        config.secret_access_key.clone(),
        config.session_token.clone(),
        None,
        "emulator-test",
    )
}

async fn sdk_config(emulator: &RunningEmulator, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

async fn runtime_client(emulator: &RunningEmulator, config: &EmulatorConfig) -> RuntimeClient {
    RuntimeClient::new(&sdk_config(emulator, credentials_for(config)).await)
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_string()))
        .build()
        .unwrap()
}

fn reply_text(output: Option<&ConverseOutput>) -> String {
    match output {
        Some(ConverseOutput::Message(message)) => message
            .content()
            .iter()
            .filter_map(|block| block.as_text().ok())
            .cloned()
            .collect(),
        _ => panic!("no message in {output:?}"),
    }
}

#[tokio::test]
async fn converse_echoes_with_usage_and_records_the_caller() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client = runtime_client(&emulator, &config).await;

    let output = client
        .converse()
        .model_id(SONNET_PROFILE)
        .system(SystemContentBlock::Text("You are terse.".into()))
        .messages(user("Hello there, emulator"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply_text(output.output()), "Echo: Hello there, emulator");
    assert_eq!(output.stop_reason(), &StopReason::EndTurn);
    let usage = output.usage().unwrap();
    assert_eq!(usage.input_tokens(), 6);
    assert_eq!(usage.output_tokens(), 4);
    assert_eq!(usage.total_tokens(), 10);
    assert!(output.metrics().is_some());

    let truncated = client
        .converse()
        .model_id("anthropic.claude-3-haiku-20240307-v1:0")
        .messages(user("one two three four five"))
        .inference_config(InferenceConfiguration::builder().max_tokens(2).build())
        .send()
        .await
        .unwrap();
    assert_eq!(reply_text(truncated.output()), "Echo: one");
    assert_eq!(truncated.stop_reason(), &StopReason::MaxTokens);

    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh";
    let via_arn = client
        .converse()
        .model_id(arn)
        .messages(user("[[emu:stop=guardrail_intervened]] hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply_text(via_arn.output()), "Echo: hi");
    assert_eq!(via_arn.stop_reason(), &StopReason::GuardrailIntervened);

    let observed = emulator.observations();
    assert_eq!(observed.requests("Converse"), 3);
    assert_eq!(observed.last_access_key_id.as_deref(), Some("AKIAEMULATOR"));
    assert_eq!(observed.last_session_token, None);
    emulator.stop().await;
}

#[tokio::test]
async fn converse_stream_delivers_every_event() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client = runtime_client(&emulator, &config).await;

    let mut output = client
        .converse_stream()
        .model_id("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        .messages(user("stream  these words [[emu:delay-between=2]]"))
        .send()
        .await
        .unwrap();
    let mut kinds = Vec::new();
    let mut deltas = Vec::new();
    let mut stop_reason = None;
    let mut usage = None;
    while let Some(event) = output.stream.recv().await.unwrap() {
        match &event {
            ConverseStreamOutput::MessageStart(start) => {
                assert_eq!(start.role(), &ConversationRole::Assistant);
                kinds.push("messageStart");
            }
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                assert_eq!(delta.content_block_index(), 0);
                if let Some(ContentBlockDelta::Text(text)) = delta.delta() {
                    deltas.push(text.clone());
                }
                kinds.push("contentBlockDelta");
            }
            ConverseStreamOutput::ContentBlockStop(_) => kinds.push("contentBlockStop"),
            ConverseStreamOutput::MessageStop(stop) => {
                stop_reason = Some(stop.stop_reason().clone());
                kinds.push("messageStop");
            }
            ConverseStreamOutput::Metadata(metadata) => {
                usage = metadata.usage().cloned();
                kinds.push("metadata");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(deltas, vec!["Echo: ", "stream  ", "these ", "words"]);
    assert_eq!(deltas.concat(), "Echo: stream  these words");
    assert_eq!(
        kinds,
        vec![
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(stop_reason, Some(StopReason::EndTurn));
    let usage = usage.unwrap();
    assert_eq!((usage.input_tokens(), usage.output_tokens()), (4, 4));
    assert_eq!(emulator.observations().requests("ConverseStream"), 1);
    emulator.stop().await;
}

#[tokio::test]
async fn converse_stream_exception_mid_stream_is_an_sdk_error() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client = runtime_client(&emulator, &config).await;

    for (member, check) in [
        (
            "throttlingException",
            (|error: &ConverseStreamOutputError| error.is_throttling_exception()) as fn(&_) -> bool,
        ),
        ("modelStreamErrorException", |error| {
            error.is_model_stream_error_exception()
        }),
        ("serviceUnavailableException", |error| {
            error.is_service_unavailable_exception()
        }),
    ] {
        let mut output = client
            .converse_stream()
            .model_id(SONNET_PROFILE)
            .messages(user(&format!(
                "a b c d [[emu:stream-error={member} after=2]]"
            )))
            .send()
            .await
            .unwrap();
        let mut deltas = 0;
        let error = loop {
            match output.stream.recv().await {
                Ok(Some(ConverseStreamOutput::ContentBlockDelta(_))) => deltas += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("stream ended without the scripted exception"),
                Err(error) => break error,
            }
        };
        assert_eq!(deltas, 2, "{member}");
        let SdkError::ServiceError(service_error) = &error else {
            panic!("expected a modeled error, got {error:?}");
        };
        assert!(check(service_error.err()), "{member}: {error:?}");
        assert!(service_error.err().message().is_some());
    }
    emulator.stop().await;
}

#[tokio::test]
async fn scripted_and_validation_errors_surface_with_aws_codes() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client = runtime_client(&emulator, &config).await;

    let throttled = client
        .converse()
        .model_id(SONNET_PROFILE)
        .messages(user("[[emu:error=ThrottlingException]] hi"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(throttled.code(), Some("ThrottlingException"));
    assert_eq!(throttled.raw_response().unwrap().status().as_u16(), 429);
    assert!(
        throttled
            .as_service_error()
            .unwrap()
            .is_throttling_exception()
    );

    let stream_throttled = client
        .converse_stream()
        .model_id(SONNET_PROFILE)
        .messages(user("[[emu:error=ModelTimeoutException]]"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(stream_throttled.code(), Some("ModelTimeoutException"));
    assert_eq!(
        stream_throttled.raw_response().unwrap().status().as_u16(),
        408
    );

    let cases = [
        ("no.such-model", "The provided model identifier is invalid."),
        (
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "Invocation of model ID anthropic.claude-3-7-sonnet-20250219-v1:0 with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model.",
        ),
        (
            "amazon.titan-embed-text-v2:0",
            "This action doesn't support the model that you provided. Try again with a supported text or chat model.",
        ),
    ];
    for (model, message) in cases {
        let error = client
            .converse()
            .model_id(model)
            .messages(user("hi"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some("ValidationException"), "{model}");
        assert_eq!(error.message(), Some(message), "{model}");
        assert_eq!(error.raw_response().unwrap().status().as_u16(), 400);
    }

    let assistant_first = client
        .converse()
        .model_id(SONNET_PROFILE)
        .messages(
            Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::Text("hi".into()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(assistant_first.code(), Some("ValidationException"));
    assert!(
        assistant_first
            .message()
            .unwrap()
            .starts_with("A conversation must start with a user message")
    );

    let unknown_directive = client
        .converse()
        .model_id(SONNET_PROFILE)
        .messages(user("[[emu:explode=yes]]"))
        .send()
        .await
        .unwrap_err();
    assert!(unknown_directive.message().unwrap().contains("'explode'"));
    emulator.stop().await;
}

fn embedding_body(
    output: &aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelOutput,
) -> Value {
    serde_json::from_slice(output.body().as_ref()).unwrap()
}

#[tokio::test]
async fn invoke_model_answers_each_embedding_family() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client = runtime_client(&emulator, &config).await;
    let invoke = |model: &'static str, body: Value| {
        client
            .invoke_model()
            .model_id(model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body.to_string()))
            .send()
    };

    let v1 = invoke(
        "amazon.titan-embed-text-v1",
        json!({"inputText": "hello world"}),
    )
    .await
    .unwrap();
    assert_eq!(v1.content_type(), "application/json");
    let v1 = embedding_body(&v1);
    assert_eq!(v1["embedding"].as_array().unwrap().len(), 1536);
    assert_eq!(v1["inputTextTokenCount"], 2);

    let v2 = embedding_body(
        &invoke(
            "amazon.titan-embed-text-v2:0",
            json!({"inputText": "hello world", "dimensions": 512, "normalize": true}),
        )
        .await
        .unwrap(),
    );
    let vector = v2["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 512);
    let norm: f64 = vector
        .iter()
        .map(|v| v.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-3);

    for model in ["cohere.embed-english-v3", "cohere.embed-multilingual-v3"] {
        let cohere = embedding_body(
            &invoke(
                model,
                json!({"texts": ["a", "b c"], "input_type": "search_document"}),
            )
            .await
            .unwrap(),
        );
        assert_eq!(cohere["response_type"], "embeddings_floats");
        assert_eq!(cohere["embeddings"].as_array().unwrap().len(), 2);
        assert_eq!(cohere["embeddings"][0].as_array().unwrap().len(), 1024);
        assert_eq!(cohere["texts"], json!(["a", "b c"]));
    }

    let v4 = embedding_body(
        &invoke(
            "cohere.embed-v4:0",
            json!({"texts": ["a"], "input_type": "search_query"}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(v4["embeddings"]["float"][0].as_array().unwrap().len(), 1536);

    let same = embedding_body(
        &invoke(
            "amazon.titan-embed-text-v1",
            json!({"inputText": "hello world"}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(same["embedding"], v1["embedding"]);

    let bad = invoke("cohere.embed-english-v3", json!({"texts": ["a"]}))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("ValidationException"));
    let chat = invoke("meta.llama3-1-8b-instruct-v1:0", json!({"prompt": "hi"}))
        .await
        .unwrap_err();
    assert_eq!(chat.code(), Some("ValidationException"));
    let throttled = invoke(
        "amazon.titan-embed-text-v2:0",
        json!({"inputText": "x [[emu:error=ThrottlingException]]"}),
    )
    .await
    .unwrap_err();
    assert_eq!(throttled.code(), Some("ThrottlingException"));
    assert_eq!(emulator.observations().requests("InvokeModel"), 9);
    emulator.stop().await;
}

#[tokio::test]
async fn control_plane_lists_models_and_paginates_profiles() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let client =
        aws_sdk_bedrock::Client::new(&sdk_config(&emulator, credentials_for(&config)).await);

    let all = client.list_foundation_models().send().await.unwrap();
    let all = all.model_summaries();
    assert!(all.len() >= 14);
    let sonnet = all
        .iter()
        .find(|m| m.model_id() == "anthropic.claude-3-5-sonnet-20240620-v1:0")
        .unwrap();
    assert_eq!(
        sonnet.model_arn(),
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
    );
    assert_eq!(sonnet.provider_name(), Some("Anthropic"));
    assert_eq!(sonnet.response_streaming_supported(), Some(true));
    assert!(sonnet.model_lifecycle().is_some());
    assert!(
        all.iter()
            .any(|m| m.model_lifecycle().map(|l| l.status().as_str()) == Some("LEGACY"))
    );

    let embeddings = client
        .list_foundation_models()
        .by_output_modality(ModelModality::Embedding)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = embeddings
        .model_summaries()
        .iter()
        .map(|m| m.model_id())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&"cohere.embed-v4:0"));

    let on_demand = client
        .list_foundation_models()
        .by_provider("Anthropic")
        .by_inference_type(InferenceType::OnDemand)
        .send()
        .await
        .unwrap();
    assert!(
        on_demand
            .model_summaries()
            .iter()
            .all(|m| m.model_id() != "anthropic.claude-3-7-sonnet-20250219-v1:0")
    );

    let mut pages = client
        .list_inference_profiles()
        .max_results(2)
        .into_paginator()
        .send();
    let mut page_count = 0;
    let mut profile_ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        for summary in page.inference_profile_summaries() {
            assert!(summary.created_at().is_some());
            assert!(!summary.models().is_empty());
            profile_ids.push(summary.inference_profile_id().to_string());
        }
    }
    assert_eq!(page_count, 4);
    assert_eq!(profile_ids.len(), 7);
    assert!(profile_ids.contains(&"us.anthropic.claude-3-7-sonnet-20250219-v1:0".to_string()));

    let application = client
        .list_inference_profiles()
        .type_equals(InferenceProfileType::Application)
        .send()
        .await
        .unwrap();
    let summaries = application.inference_profile_summaries();
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        summaries[0].inference_profile_arn(),
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
    );
    assert_eq!(summaries[0].r#type(), &InferenceProfileType::Application);
    assert_eq!(
        summaries[0].created_at().unwrap().secs(),
        1_735_689_600,
        "createdAt must parse as a date-time"
    );
    let observed = emulator.observations();
    assert_eq!(observed.requests("ListFoundationModels"), 3);
    assert_eq!(observed.requests("ListInferenceProfiles"), 5);
    emulator.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_rejected_like_aws() {
    let config = EmulatorConfig {
        session_token: Some("session-token-1".into()),
        ..EmulatorConfig::default()
    };
    let emulator = start(config.clone()).await;
    let call = |credentials: Credentials| {
        let emulator = &emulator;
        async move {
            let client = RuntimeClient::new(&sdk_config(emulator, credentials).await);
            client
                .converse()
                .model_id(SONNET_PROFILE)
                .messages(user("hi"))
                .send()
                .await
        }
    };

    let ok = call(credentials_for(&config)).await.unwrap();
    assert_eq!(reply_text(ok.output()), "Echo: hi");
    let observed = emulator.observations();
    assert_eq!(
        observed.last_session_token.as_deref(),
        Some("session-token-1")
    );

    let wrong_secret = call(Credentials::new(
        "AKIAEMULATOR",
        "not-the-secret",
        Some("session-token-1".into()),
        None,
        "test",
    ))
    .await
    .unwrap_err();
    assert_eq!(wrong_secret.code(), Some("InvalidSignatureException"));
    assert_eq!(wrong_secret.raw_response().unwrap().status().as_u16(), 403);
    assert!(wrong_secret.message().unwrap().starts_with(
        "The request signature we calculated does not match the signature you provided."
    ));

    let wrong_token = call(Credentials::new(
        "AKIAEMULATOR",
        "emulator-secret",
        Some("other-token".into()),
        None,
        "test",
    ))
    .await
    .unwrap_err();
    assert_eq!(wrong_token.code(), Some("UnrecognizedClientException"));
    assert_eq!(wrong_token.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(
        wrong_token.message(),
        Some("The security token included in the request is invalid.")
    );

    let unknown_key = call(Credentials::new(
        "AKIAUNKNOWN",
        "emulator-secret",
        Some("session-token-1".into()),
        None,
        "test",
    ))
    .await
    .unwrap_err();
    assert_eq!(unknown_key.code(), Some("UnrecognizedClientException"));

    let observed = emulator.observations();
    let converse = &observed.operations["Converse"];
    assert_eq!(converse.requests, 4);
    assert_eq!(converse.auth_failures, 3);
    assert_eq!(converse.last_access_key_id.as_deref(), Some("AKIAUNKNOWN"));
    emulator.stop().await;
}

#[tokio::test]
async fn the_sdk_retries_scripted_throttling() {
    let config = EmulatorConfig::default();
    let emulator = start(config.clone()).await;
    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials_for(&config))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(1)),
        )
        .load()
        .await;
    let client = RuntimeClient::new(&sdk_config);
    let error = client
        .converse()
        .model_id(SONNET_PROFILE)
        .messages(user("[[emu:error=ThrottlingException]]"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!(emulator.observations().converse_requests(), 3);

    let not_retried = client
        .converse()
        .model_id(SONNET_PROFILE)
        .messages(user("[[emu:error=ValidationException]]"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(not_retried.code(), Some("ValidationException"));
    assert_eq!(emulator.observations().converse_requests(), 4);
    emulator.stop().await;
}
