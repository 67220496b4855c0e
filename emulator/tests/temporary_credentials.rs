//! Temporary credentials registered with the emulator, used by the AWS SDK for Rust.

use std::net::TcpListener;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_bedrockruntime::Client as RuntimeClient;
use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use bedrock_emulator::{EmulatorConfig, RunningEmulator, TemporaryCredentials, clock};
use serde_json::{Value, json};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

async fn start() -> RunningEmulator {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    RunningEmulator::start(EmulatorConfig::default(), listener)
        .await
        .unwrap()
}

fn temporary(key: &str, expires_at: i64) -> TemporaryCredentials {
    TemporaryCredentials {
        access_key_id: key.into(),
        secret_access_key: format!("{key}/secret"),
        session_token: format!("{key}-session-token"),
        expires_at,
    }
}

fn sdk_credentials(key: &str, secret: &str, token: &str) -> Credentials {
    Credentials::new(key, secret, Some(token.into()), None, "temporary-test")
}

async fn converse(
    emulator: &RunningEmulator,
    credentials: Credentials,
) -> Result<
    (),
    aws_sdk_bedrockruntime::error::SdkError<
        aws_sdk_bedrockruntime::operation::converse::ConverseError,
    >,
> {
    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    RuntimeClient::new(&sdk_config)
        .converse()
        .model_id(MODEL)
        .messages(message)
        .send()
        .await
        .map(|_| ())
}

#[tokio::test]
async fn registered_credentials_sign_requests_with_their_session_token() {
    let emulator = start().await;
    let registered =
        emulator.register_credentials(temporary("ASIATEMPORARY1", clock::unix_now() + 3600));
    assert_eq!(registered.access_key_id, "ASIATEMPORARY1");

    converse(
        &emulator,
        sdk_credentials(
            "ASIATEMPORARY1",
            "ASIATEMPORARY1/secret",
            "ASIATEMPORARY1-session-token",
        ),
    )
    .await
    .unwrap();
    let observed = emulator.observations();
    let call = &observed.operations["Converse"];
    assert_eq!(call.auth_failures, 0);
    assert_eq!(call.last_access_key_id.as_deref(), Some("ASIATEMPORARY1"));
    assert_eq!(
        call.last_session_token.as_deref(),
        Some("ASIATEMPORARY1-session-token")
    );

    // The configured pair keeps working next to registered sets.
    let defaults = EmulatorConfig::default();
    converse(
        &emulator,
        Credentials::new(
            defaults.access_key_id,
            defaults.secret_access_key,
            None,
            None,
            "static",
        ),
    )
    .await
    .unwrap();
    emulator.stop().await;
}

#[tokio::test]
async fn a_registered_key_needs_its_own_token_and_secret() {
    let emulator = start().await;
    emulator.register_credentials(temporary("ASIATEMPORARY2", clock::unix_now() + 3600));
    emulator.register_credentials(temporary("ASIAOTHER", clock::unix_now() + 3600));

    let wrong_token = converse(
        &emulator,
        sdk_credentials(
            "ASIATEMPORARY2",
            "ASIATEMPORARY2/secret",
            "ASIAOTHER-session-token",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong_token.code(), Some("UnrecognizedClientException"));

    let no_token = converse(
        &emulator,
        Credentials::new("ASIATEMPORARY2", "ASIATEMPORARY2/secret", None, None, "t"),
    )
    .await
    .unwrap_err();
    assert_eq!(no_token.code(), Some("UnrecognizedClientException"));

    let wrong_secret = converse(
        &emulator,
        sdk_credentials(
            "ASIATEMPORARY2",
            "ASIAOTHER/secret",
            "ASIATEMPORARY2-session-token",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong_secret.code(), Some("InvalidSignatureException"));
    assert_eq!(
        emulator.observations().operations["Converse"].auth_failures,
        3
    );
    emulator.stop().await;
}

#[tokio::test]
async fn expired_credentials_are_refused_like_aws() {
    let emulator = start().await;
    emulator.register_credentials(temporary("ASIAEXPIRED", clock::unix_now() - 1));
    let error = converse(
        &emulator,
        sdk_credentials(
            "ASIAEXPIRED",
            "ASIAEXPIRED/secret",
            "ASIAEXPIRED-session-token",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Some("ExpiredTokenException"));
    assert_eq!(
        error.message(),
        Some("The security token included in the request is expired")
    );
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 403);

    // Registering the key again with a later expiration renews it.
    emulator.register_credentials(temporary("ASIAEXPIRED", clock::unix_now() + 60));
    converse(
        &emulator,
        sdk_credentials(
            "ASIAEXPIRED",
            "ASIAEXPIRED/secret",
            "ASIAEXPIRED-session-token",
        ),
    )
    .await
    .unwrap();
    emulator.stop().await;
}

#[tokio::test]
async fn credentials_register_over_http_without_a_signature() {
    let emulator = start().await;
    let url = format!("{}/_emulator/credentials", emulator.endpoint_url());
    let http = reqwest::Client::new();
    let expiration = clock::format_rfc3339(clock::unix_now() + 600);
    let response = http
        .post(&url)
        .json(&json!({
            "accessKeyId": "ASIAOVERHTTP",
            "secretAccessKey": "over-http-secret",
            "sessionToken": "over-http-token",
            "expiration": expiration,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"accessKeyId": "ASIAOVERHTTP", "expiration": expiration})
    );

    converse(
        &emulator,
        sdk_credentials("ASIAOVERHTTP", "over-http-secret", "over-http-token"),
    )
    .await
    .unwrap();

    let response = http
        .post(&url)
        .body(r#"{"accessKeyId":"ASIAX"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .headers()
            .get("x-amzn-errortype")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("ValidationException")
    );
    // Registrations are not operations: they are not counted as requests.
    assert!(
        !emulator
            .observations()
            .operations
            .contains_key("RegisterCredentials")
    );
    emulator.stop().await;
}
