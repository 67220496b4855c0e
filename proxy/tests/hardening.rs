//! Per-key limits and upstream faults: the gateway over HTTP in front of the
//! Bedrock emulator, both in-process, the AWS SDK for Rust between them.
//! (The load tests with the real binaries are in tests/e2e/test_hardening.py.)

mod support;

use std::time::{Duration, Instant};

use bedrock_emulator::RunningEmulator;
use bedrock_gateway_proxy::server::RunningGateway;
use futures_util::StreamExt;
use serde_json::{Value, json};

use support::{emulator, metrics_text, post_chat_as};

const KEY: &str = "hardening-key";
const OTHER_KEY: &str = "hardening-other-key";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const PATIENCE: Duration = Duration::from_secs(30);

async fn gateway(emulator: &RunningEmulator, extra: &[&str]) -> RunningGateway {
    let keys = format!("{KEY},{OTHER_KEY}");
    let flags = [&["--api-keys", keys.as_str(), "--workers", "2"], extra].concat();
    support::gateway(emulator, &flags).await
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]})
}

async fn post_chat(gateway: &RunningGateway, body: &Value) -> reqwest::Response {
    post_chat_as(gateway, KEY, body).await
}

/// The value of one sample (`name{labels}` as rendered), 0 when absent.
async fn metric(gateway: &RunningGateway, sample: &str) -> f64 {
    metrics_text(gateway)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `data:` payloads of an SSE body.
fn sse_events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.trim_start_matches("data: "))
        .collect()
}

async fn assert_rate_limited(response: reqwest::Response, limit: &str) -> Value {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let retry_after_ms: u64 = response.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        retry_after,
        retry_after_ms.div_ceil(1000),
        "both headers say the same"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "requests", "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(limit),
        "{body}"
    );
    assert!(!body.to_string().contains(KEY), "the key is never echoed");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_per_minute_limit_get_429_with_the_wait() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator, &["--key-requests-per-minute", "3"]).await;
    for _ in 0..3 {
        let response = post_chat(&gateway, &chat("within the limit", false)).await;
        assert_eq!(response.status(), 200);
    }
    let refused = post_chat(&gateway, &chat("one too many", false)).await;
    // 3 per minute: a token every 20 s, so the wait is at most 20 s.
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_rate_limited(refused, "requests per minute: limit 3").await;
    assert_eq!(
        emulator.observations().converse_requests(),
        3,
        "refused requests never reach Bedrock"
    );

    // Every route counts, and the other key has its own bucket.
    let models = reqwest::Client::new()
        .get(format!("http://{}/v1/models", gateway.api_addr))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 429);
    let other = post_chat_as(&gateway, OTHER_KEY, &chat("other key", false)).await;
    assert_eq!(other.status(), 200);
    // A wrong key is a 401, not a 429, and takes nothing from any bucket.
    let wrong = post_chat_as(&gateway, "not-a-key", &chat("x", false)).await;
    assert_eq!(wrong.status(), 401);

    assert_eq!(
        metric(
            &gateway,
            "bedrock_gateway_key_limit_rejections_total{limit=\"requests_per_minute\"}"
        )
        .await,
        2.0
    );
    let text = metrics_text(&gateway).await;
    assert!(
        text.contains(
            "bedrock_gateway_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"429\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains(KEY) && !text.contains(OTHER_KEY));
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_slots_are_refused_then_freed_by_end_error_and_drop() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator, &["--key-max-concurrent-streams", "2"]).await;
    let slow = chat("slow [[emu:words=400]] [[emu:delay-between=25]]", true);

    // Two open streams fill the key's slots.
    let first = post_chat(&gateway, &slow).await;
    assert_eq!(first.status(), 200);
    let second = post_chat(&gateway, &slow).await;
    assert_eq!(second.status(), 200);
    let refused = post_chat(&gateway, &chat("third", true)).await;
    let mut refusals = 1.0;
    let body = assert_rate_limited(refused, "concurrent streams: limit 2").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("streams")
    );
    // Non-streaming requests and other keys are not limited by it.
    assert_eq!(
        post_chat(&gateway, &chat("not a stream", false))
            .await
            .status(),
        200
    );
    let other = post_chat_as(&gateway, OTHER_KEY, &chat("other key", true)).await;
    assert_eq!(other.status(), 200);
    other.text().await.unwrap();

    // The client drops the first stream: its slot comes back.
    let mut dropped = first.bytes_stream();
    dropped.next().await.expect("a first chunk").unwrap();
    drop(dropped);
    eventually("the dropped stream's slot is free", async || {
        let response = post_chat(&gateway, &chat("after a drop", true)).await;
        if response.status() == 200 {
            let text = response.text().await.unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            true
        } else {
            assert_eq!(response.status(), 429);
            refusals += 1.0;
            false
        }
    })
    .await;

    // A stream that fails mid-way gives its slot back too.
    let failing = post_chat(
        &gateway,
        &chat(
            "a b c [[emu:stream-error=modelStreamErrorException after=1]]",
            true,
        ),
    )
    .await;
    assert_eq!(failing.status(), 200);
    let text = failing.text().await.unwrap();
    let last: Value = serde_json::from_str(sse_events(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "ModelStreamErrorException");
    // So does one refused by Bedrock before it started.
    let throttled = post_chat(&gateway, &chat("[[emu:error=ThrottlingException]]", true)).await;
    assert_eq!(throttled.status(), 429);
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ThrottlingException");

    // The second stream still runs and holds one slot; it finishes normally.
    let finished = second.text().await.unwrap();
    assert!(finished.ends_with("data: [DONE]\n\n"));
    for _ in 0..2 {
        let response = post_chat(&gateway, &slow).await;
        assert_eq!(response.status(), 200, "both slots are free again");
        drop(response);
    }
    eventually("every stream is released", async || {
        metric(&gateway, "bedrock_gateway_streams_in_flight").await == 0.0
    })
    .await;

    assert_eq!(
        metric(
            &gateway,
            "bedrock_gateway_key_limit_rejections_total{limit=\"concurrent_streams\"}"
        )
        .await,
        refusals,
        "the third stream, and any refusal while the dropped slot was being freed"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_off_by_default() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator, &[]).await;
    assert!(gateway.state.key_limiter.is_none());
    let slow = chat("slow [[emu:words=50]] [[emu:delay-between=20]]", true);
    let mut open = Vec::new();
    for _ in 0..20 {
        let response = post_chat(&gateway, &slow).await;
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    for _ in 0..100 {
        let response = post_chat(&gateway, &chat("many", false)).await;
        assert_eq!(response.status(), 200);
    }
    drop(open);
    assert!(
        !metrics_text(&gateway)
            .await
            .contains("bedrock_gateway_key_limit_rejections_total{")
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_reset_is_a_clear_502_or_error_chunk() {
    let emulator = emulator().await;
    let gateway = gateway(&emulator, &[]).await;

    // Reset before Bedrock answers a Converse call.
    let response = post_chat(&gateway, &chat("cut [[emu:reset=before]]", false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    assert_eq!(body["error"]["code"], "BedrockUnreachable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection reset by peer"),
        "{body}"
    );

    // Reset before the ConverseStream response head: no stream, a 502.
    let response = post_chat(&gateway, &chat("cut [[emu:reset=before]]", true)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BedrockUnreachable", "{body}");

    // Reset mid-stream: the content so far, then an error event, then the end.
    // (A reset discards what the gateway has not read yet: the emulator waits
    // its delay-between before resetting, so the two deltas are read first.)
    let response = post_chat(
        &gateway,
        &chat(
            "one two three four five [[emu:reset=2 delay-between=300]]",
            true,
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("the stream ends cleanly");
    let events = sse_events(&text);
    assert!(!text.contains("[DONE]"), "{text}");
    let chunks: Vec<Value> = events
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Echo: one ");
    let error = &chunks.last().unwrap()["error"];
    assert_eq!(error["type"], "api_error", "{text}");
    assert_eq!(error["code"], "BedrockUnreachable", "{text}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Connection reset by peer"),
        "{text}"
    );

    let observed = emulator.observations();
    assert_eq!(
        observed.converse_requests(),
        1,
        "one attempt, as configured"
    );
    assert_eq!(observed.converse_stream_requests(), 2);
    assert_eq!(
        metric(
            &gateway,
            "bedrock_gateway_upstream_errors_total{error_type=\"BedrockUnreachable\"}"
        )
        .await,
        3.0,
        "every reset counted"
    );
    assert_eq!(
        metric(&gateway, "bedrock_gateway_streams_in_flight").await,
        0.0
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}
