//! The gateway's limits on what one request may hold: request line and header
//! size and count, slow clients, JSON nesting and request shapes whose
//! translation could take more than linear work. Each must end in an answer
//! (or a closed connection) and leave the gateway serving, never a hang or a
//! crashed worker.

mod support;

use std::time::{Duration, Instant};

use bedrock_emulator::RunningEmulator;
use bedrock_gateway_proxy::server::{REQUEST_HEAD_TIMEOUT, RunningGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "limits-key";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// Far above anything a healthy gateway needs; only a hang reaches it.
const GENEROUS: Duration = Duration::from_secs(60);

struct Harness {
    emulator: RunningEmulator,
    gateway: RunningGateway,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Self {
        let emulator = support::emulator().await;
        let flags = [&["--api-keys", KEY, "--workers", "2"], extra].concat();
        let gateway = support::gateway(&emulator, &flags).await;
        Harness { emulator, gateway }
    }

    async fn stop(self) {
        self.gateway.shutdown().await.expect("gateway stops");
        self.emulator.stop().await;
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.api_addr)
    }

    async fn post_chat(&self, body: String) -> (u16, Value, Duration) {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .timeout(GENEROUS)
            .body(body)
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        (status, body, started.elapsed())
    }

    /// The gateway still answers a normal request.
    async fn assert_serving(&self) {
        let response = reqwest::Client::new()
            .get(self.url("/v1/models"))
            .bearer_auth(KEY)
            .timeout(GENEROUS)
            .send()
            .await
            .expect("the gateway still answers");
        assert_eq!(response.status().as_u16(), 200);
    }

    /// Sends raw bytes and returns the status line of the answer, or `None`
    /// when the gateway closed the connection without one.
    async fn raw(&self, request: Vec<u8>) -> Option<String> {
        let mut stream = TcpStream::connect(self.gateway.api_addr)
            .await
            .expect("connect");
        let (mut reader, mut writer) = stream.split();
        let write = async {
            // The gateway may close before reading everything: not an error here.
            let _ = writer.write_all(&request).await;
        };
        let read = async {
            let mut answer = Vec::new();
            let _ = reader.read_to_end(&mut answer).await;
            answer
        };
        let ((), answer) = tokio::time::timeout(GENEROUS, async { tokio::join!(write, read) })
            .await
            .expect("the gateway answers or closes in time");
        let text = String::from_utf8_lossy(&answer);
        text.lines()
            .next()
            .filter(|line| line.starts_with("HTTP/1.1 "))
            .map(str::to_owned)
    }
}

fn chat_request(extra_headers: &str, path: &str) -> Vec<u8> {
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn filler_headers(count: usize, value_len: usize) -> String {
    (0..count)
        .map(|index| format!("x-filler-{index}: {}\r\n", "v".repeat(value_len)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_and_size_have_limits() {
    let harness = Harness::start().await;

    // Within the limits: a request with 80 headers and a 16 KiB header is served.
    let status = harness
        .raw(chat_request(
            &filler_headers(80, 200),
            "/v1/chat/completions",
        ))
        .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    let status = harness
        .raw(chat_request(
            &filler_headers(1, 16 * 1024),
            "/v1/chat/completions",
        ))
        .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));

    // More than 96 headers: 431.
    let status = harness
        .raw(chat_request(
            &filler_headers(120, 8),
            "/v1/chat/completions",
        ))
        .await;
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );

    // A request head over 128 KiB, in one header or in the request line: 431,
    // or the connection closed when the gateway stops reading mid-request.
    for request in [
        chat_request(&filler_headers(1, 200 * 1024), "/v1/chat/completions"),
        chat_request(
            "",
            &format!("/v1/chat/completions?{}", "q".repeat(200 * 1024)),
        ),
    ] {
        let status = harness.raw(request).await;
        assert!(
            status.is_none()
                || status.as_deref() == Some("HTTP/1.1 431 Request Header Fields Too Large"),
            "unexpected answer {status:?}"
        );
    }
    harness.assert_serving().await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let harness = Harness::start().await;
    let started = Instant::now();
    let status = harness
        .raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n".to_vec())
        .await;
    let waited = started.elapsed();
    assert!(
        status.is_none() || status.as_deref() == Some("HTTP/1.1 408 Request Timeout"),
        "unexpected answer {status:?}"
    );
    assert!(
        waited >= REQUEST_HEAD_TIMEOUT / 2,
        "cut off before the head timeout: {waited:?}"
    );
    eprintln!("an unfinished request head was cut off after {waited:?}");
    harness.assert_serving().await;
    harness.stop().await;
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn with_nested(location: &str, depth: usize) -> String {
    let deep = nested(depth);
    let user = r#"{"role": "user", "content": "hi"}"#;
    match location {
        "metadata" => {
            format!(r#"{{"model": "{MODEL}", "messages": [{user}], "metadata": {{"k": {deep}}}}}"#)
        }
        "content" => format!(
            r#"{{"model": "{MODEL}", "messages": [{{"role": "user", "content": {deep}}}]}}"#
        ),
        "content part" => format!(
            r#"{{"model": "{MODEL}", "messages": [{{"role": "user", "content": [{{"type": "text", "text": "hi", "extra": {deep}}}]}}]}}"#
        ),
        "image_url" => format!(
            r#"{{"model": "{MODEL}", "messages": [{{"role": "user", "content": [{{"type": "image_url", "image_url": {deep}}}]}}]}}"#
        ),
        "tool parameters" => format!(
            r#"{{"model": "{MODEL}", "messages": [{user}], "tools": [{{"type": "function", "function": {{"name": "f", "parameters": {{"type": "object", "x": {deep}}}}}}}]}}"#
        ),
        "response schema" => format!(
            r#"{{"model": "{MODEL}", "messages": [{user}], "response_format": {{"type": "json_schema", "json_schema": {{"name": "r", "schema": {{"type": "object", "x": {deep}}}}}}}}}"#
        ),
        "tool call arguments" => {
            let arguments = Value::String(format!(r#"{{"x": {deep}}}"#)).to_string();
            format!(
                r#"{{"model": "{MODEL}", "tools": [{{"type": "function", "function": {{"name": "f"}}}}], "messages": [{user}, {{"role": "assistant", "tool_calls": [{{"id": "c", "type": "function", "function": {{"name": "f", "arguments": {arguments}}}}}]}}, {{"role": "tool", "tool_call_id": "c", "content": "ok"}}]}}"#
            )
        }
        other => panic!("unknown location {other}"),
    }
}

const NESTING_LOCATIONS: [&str; 7] = [
    "metadata",
    "content",
    "content part",
    "image_url",
    "tool parameters",
    "response schema",
    "tool call arguments",
];

/// serde_json stops at 128 levels; deeper bodies are refused as invalid JSON
/// before any recursive work, wherever the nesting sits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    let harness = Harness::start().await;
    for location in NESTING_LOCATIONS {
        for depth in [200, 100_000] {
            let (status, body, _) = harness.post_chat(with_nested(location, depth)).await;
            assert_eq!(status, 400, "{location} at depth {depth}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("recursion limit exceeded"),
                "{location} at depth {depth}: {message}"
            );
        }
    }
    harness.assert_serving().await;
    harness.stop().await;
}

/// Just within serde_json's limit, every place that walks nested values
/// (deserialisation, JSON -> Document conversion, the SDK's serialiser)
/// finishes on a worker thread's stack: the answer is a success or a client
/// error, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_just_within_the_limit_is_handled() {
    let harness = Harness::start().await;
    for location in NESTING_LOCATIONS {
        // The deepest nesting the body still parses with at this location.
        let mut depth = 127;
        let answer = loop {
            let (status, body, _) = harness.post_chat(with_nested(location, depth)).await;
            let recursion = body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("recursion limit exceeded"));
            if !recursion || depth == 1 {
                break (status, body);
            }
            depth -= 1;
        };
        let (status, body) = answer;
        assert!(
            status == 200 || (400..500).contains(&status),
            "{location} at depth {depth}: {status} {body}"
        );
        eprintln!("{location}: deepest accepted nesting {depth}, answered {status}");
    }
    harness.assert_serving().await;
    harness.stop().await;
}

/// Request shapes that are cheap to send but could be expensive to
/// translate: the body limit bounds them and the work stays linear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_request_shapes_are_answered_in_time() {
    let harness = Harness::start().await;

    // Just under the structure budget (two per key): a duplicate check over
    // all keys used to make this take minutes.
    let metadata: serde_json::Map<String, Value> = (0..199_990)
        .map(|index| (format!("k{index}"), json!("v")))
        .collect();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                      "metadata": metadata})
    .to_string();
    let size = body.len();
    let (status, _, took) = harness.post_chat(body).await;
    assert_eq!(status, 200);
    eprintln!("199,990 metadata keys ({size} bytes): answered in {took:?}");

    let messages: Vec<Value> = (0..70_000)
        .map(|index| {
            json!({"role": if index % 2 == 0 { "user" } else { "assistant" }, "content": "w"})
        })
        .chain([json!({"role": "user", "content": "last"})])
        .collect();
    let body = json!({"model": MODEL, "messages": messages}).to_string();
    let size = body.len();
    let (status, body, took) = harness.post_chat(body).await;
    assert!(
        status == 200 || (400..500).contains(&status),
        "{status} {body}"
    );
    eprintln!("70,001 messages ({size} bytes): answered {status} in {took:?}");

    let tools: Vec<Value> = (0..5_000)
        .map(|index| json!({"type": "function", "function": {"name": format!("tool_{index}")}}))
        .collect();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                      "tools": tools, "tool_choice": {"type": "function", "function": {"name": "tool_4999"}}})
    .to_string();
    let size = body.len();
    let (status, body, took) = harness.post_chat(body).await;
    assert!(
        status == 200 || (400..500).contains(&status),
        "{status} {body}"
    );
    eprintln!("5,000 tools ({size} bytes): answered {status} in {took:?}");

    harness.assert_serving().await;
    harness.stop().await;
}

/// actix-web has no deadline for a request body; the gateway sets one
/// (`--body-timeout-seconds`), so a client cannot hold a request open by
/// sending its body slowly or never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_body_is_cut_off() {
    let harness = Harness::start_with(&["--body-timeout-seconds", "2"]).await;
    let started = Instant::now();
    let status = harness
        .raw(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\": "
            )
            .into_bytes(),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert!(
        waited >= Duration::from_secs(2),
        "cut off early: {waited:?}"
    );
    eprintln!("an unfinished body was cut off after {waited:?}");
    harness.assert_serving().await;
    harness.stop().await;
}

/// Parsed JSON takes far more memory than its text: an 18 MB array of zeros in
/// a tool schema grew the proxy by 1.3 GB. The structure of a body, and of the
/// tool call arguments inside its strings, is bounded before anything is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_too_much_json_structure_are_refused_before_parsing() {
    let harness = Harness::start().await;
    let zeros = |count: usize| format!("[{}]", vec!["0"; count].join(","));
    let user = r#"{"role": "user", "content": "hi"}"#;
    let shapes = [
        (
            "a huge array in a tool schema",
            format!(
                r#"{{"model": "{MODEL}", "messages": [{user}], "tools": [{{"type": "function", "function": {{"name": "f", "parameters": {{"type": "object", "x": {}}}}}}}]}}"#,
                zeros(2_000_000)
            ),
        ),
        (
            "a huge array in tool call arguments",
            format!(
                r#"{{"model": "{MODEL}", "tools": [{{"type": "function", "function": {{"name": "f"}}}}], "messages": [{user}, {{"role": "assistant", "tool_calls": [{{"id": "c", "type": "function", "function": {{"name": "f", "arguments": {}}}}}]}}, {{"role": "tool", "tool_call_id": "c", "content": "ok"}}]}}"#,
                Value::String(format!(r#"{{"x": {}}}"#, zeros(2_000_000)))
            ),
        ),
        (
            "half a million tiny messages",
            json!({"model": MODEL, "messages": vec![json!({"role": "user", "content": "w"}); 500_000]})
                .to_string(),
        ),
    ];
    for (shape, body) in shapes {
        let size = body.len();
        let (status, body, took) = harness.post_chat(body).await;
        assert_eq!(status, 400, "{shape}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("JSON elements"), "{shape}: {message}");
        eprintln!("{shape} ({size} bytes): refused in {took:?}");
    }
    harness.assert_serving().await;
    harness.stop().await;
}
