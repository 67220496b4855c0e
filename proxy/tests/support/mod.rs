//! What the gateway's integration tests share: the Bedrock emulator and the
//! gateway, both in-process on loopback ports, the AWS SDK for Rust between
//! them.
//!
//! Each test file declares `mod support;` and uses what it needs, so parts of
//! this module go unused in some test binaries.
#![allow(dead_code)]

use std::net::TcpListener;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use bedrock_gateway_proxy::config::Config;
use bedrock_gateway_proxy::server::{self, RunningGateway};
use clap::Parser;

pub fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind loopback")
}

pub async fn emulator() -> RunningEmulator {
    RunningEmulator::start(EmulatorConfig::default(), loopback())
        .await
        .expect("emulator starts")
}

/// The AWS SDK's configuration for the emulator, signing with this secret
/// key (the emulator's own, or a wrong one), without retries.
pub async fn sdk_config(emulator: &RunningEmulator, secret_access_key: &str) -> SdkConfig {
    let defaults = EmulatorConfig::default();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(defaults.region.clone()))
        .endpoint_url(emulator.endpoint_url())
        .credentials_provider(Credentials::new(
            defaults.access_key_id.clone(),
            secret_access_key.to_owned(),
            None,
            None,
            "integration-test",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

/// The gateway in front of the emulator, started with these flags.
pub async fn gateway(emulator: &RunningEmulator, flags: &[&str]) -> RunningGateway {
    let secret = EmulatorConfig::default().secret_access_key;
    gateway_signing_with(emulator, &secret, flags).await
}

/// The gateway with these flags, its AWS SDK signing with `secret_access_key`.
pub async fn gateway_signing_with(
    emulator: &RunningEmulator,
    secret_access_key: &str,
    flags: &[&str],
) -> RunningGateway {
    let sdk_config = sdk_config(emulator, secret_access_key).await;
    let args = std::iter::once("bedrock-gateway-proxy").chain(flags.iter().copied());
    let config = Config::try_parse_from(args).expect("flags");
    server::start(&config, &sdk_config, loopback(), loopback()).expect("gateway starts")
}

/// A chat completion request to the gateway with this API key.
pub async fn post_chat_as(
    gateway: &RunningGateway,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.api_addr))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("gateway answers")
}

/// The gateway's Prometheus metrics, as text.
pub async fn metrics_text(gateway: &RunningGateway) -> String {
    reqwest::get(format!("http://{}/metrics", gateway.metrics_addr))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics body")
}
