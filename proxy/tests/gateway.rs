//! The gateway over HTTP in front of the Bedrock emulator, both in-process,
//! the AWS SDK for Rust between them.

mod support;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use bedrock_gateway_proxy::config::Config;
use bedrock_gateway_proxy::server::{self, RunningGateway};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};

use support::{emulator, loopback, metrics_text};

const KEY: &str = "integration-key";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

async fn gateway_with(emulator: &RunningEmulator, secret: &str, extra: &[&str]) -> RunningGateway {
    let flags = [&["--api-keys", KEY, "--workers", "2"], extra].concat();
    support::gateway_signing_with(emulator, secret, &flags).await
}

async fn gateway(emulator: &RunningEmulator) -> RunningGateway {
    gateway_with(emulator, &EmulatorConfig::default().secret_access_key, &[]).await
}

fn url(gateway: &RunningGateway, path: &str) -> String {
    format!("http://{}{path}", gateway.api_addr)
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]})
}

async fn post_chat(gateway: &RunningGateway, body: &Value) -> reqwest::Response {
    support::post_chat_as(gateway, KEY, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_completion_round_trips_through_the_sdk() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator).await;
    let response = post_chat(&gateway, &chat("integration hello", false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: integration hello"
    );
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(emulator.observations().converse_requests(), 1);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_completion_arrives_as_sse_chunks() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator).await;
    let mut body = chat("streamed words here", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post_chat(&gateway, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event.trim_start_matches("data: ")).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Echo: streamed words here");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_aws_credentials_surface_as_a_gateway_error_not_a_hang() {
    let emulator = emulator().await;
    let gateway = gateway_with(&emulator, "not-the-secret", &[]).await;
    let response = post_chat(&gateway, &chat("x", false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidSignatureException");
    assert_eq!(body["error"]["type"], "api_error");
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_cancels_the_bedrock_call() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator).await;
    let response = post_chat(
        &gateway,
        &chat("slow [[emu:words=200]] [[emu:delay-between=50]]", true),
    )
    .await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a first chunk").unwrap();
    assert!(first.starts_with(b"data: "));
    assert!(
        metrics_text(&gateway)
            .await
            .contains("bedrock_gateway_streams_in_flight 1")
    );
    drop(stream);
    let mut released = false;
    for _ in 0..100 {
        if metrics_text(&gateway)
            .await
            .contains("bedrock_gateway_streams_in_flight 0")
        {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        released,
        "the stream was not released after the client left"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event() {
    let emulator = emulator().await;
    let gateway = gateway_with(
        &emulator,
        &EmulatorConfig::default().secret_access_key,
        &["--stream-idle-timeout-seconds", "1"],
    )
    .await;
    let response = post_chat(&gateway, &chat("stall [[emu:delay-between=3000]]", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(error["error"]["code"], "BedrockStreamIdle");
    assert!(!text.contains("[DONE]"));
    assert!(
        metrics_text(&gateway)
            .await
            .contains("bedrock_gateway_upstream_errors_total{error_type=\"BedrockStreamIdle\"} 1")
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_stream_finish_and_refuses_new_work() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator).await;
    let base = url(&gateway, "");
    let in_flight = post_chat(
        &gateway,
        &chat("finish me [[emu:words=10]] [[emu:delay-between=100]]", true),
    )
    .await;
    let state = gateway.state.clone();
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(state.is_draining());
    let text = in_flight.text().await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the stream was cut: {text}"
    );
    shutdown.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer accepting"
    );
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_without_credentials_and_says_why() {
    let emulator = emulator().await;
    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emulator.endpoint_url())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(FailingCredentials),
        )
        .load()
        .await;
    let config = Config::try_parse_from(["bedrock-gateway-proxy", "--api-keys", KEY]).unwrap();
    let gateway = server::start(&config, &sdk_config, loopback(), loopback()).unwrap();
    let response = reqwest::get(url(&gateway, "/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no web identity token"),
        "{body}"
    );
    let response = post_chat(&gateway, &chat("x", false)).await;
    assert!(response.status().is_server_error());
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{body}"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[derive(Debug)]
struct FailingCredentials;

impl aws_credential_types::provider::ProvideCredentials for FailingCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no web identity token",
            ),
        ))
    }
}
