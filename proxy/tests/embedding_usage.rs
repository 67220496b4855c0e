//! Embedding usage comes from Bedrock's own token counts: Titan's reply body,
//! and for Cohere (whose body has none) the InvokeModel response header.

mod support;

use bedrock_emulator::RunningEmulator;
use bedrock_gateway_proxy::server::RunningGateway;
use bedrock_gateway_proxy::translate::embeddings::estimated_tokens;
use serde_json::{Value, json};

const KEY: &str = "embedding-usage-key";

async fn start() -> (RunningEmulator, RunningGateway) {
    let emulator = support::emulator().await;
    let gateway = support::gateway(&emulator, &["--api-keys", KEY]).await;
    (emulator, gateway)
}

async fn prompt_tokens(gateway: &RunningGateway, model: &str, input: Value) -> u64 {
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/embeddings", gateway.api_addr))
        .bearer_auth(KEY)
        .json(&json!({"model": model, "input": input}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"]
    );
    body["usage"]["prompt_tokens"].as_u64().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_usage_is_the_token_count_header_of_every_call() {
    let (emulator, gateway) = start().await;
    // The emulator counts words; cl100k_base splits these long words further,
    // so the two counts tell the sources apart.
    let texts: Vec<String> = (0..100)
        .map(|index| format!("internationalization counterrevolutionaries {index}"))
        .collect();
    assert!(estimated_tokens(&texts) > 300);
    for model in ["cohere.embed-english-v3", "cohere.embed-v4:0"] {
        let tokens = prompt_tokens(&gateway, model, json!(texts)).await;
        assert_eq!(
            tokens, 300,
            "{model}: 96 + 4 texts of three words, two calls"
        );
    }
    assert_eq!(
        prompt_tokens(
            &gateway,
            "amazon.titan-embed-text-v2:0",
            json!("internationalization counterrevolutionaries")
        )
        .await,
        2
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}
