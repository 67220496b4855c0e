//! Raw HTTP/1.1 requests: malformed input, unauthenticated paths and wire details.

use std::net::TcpListener;

use bedrock_emulator::eventstream::decode_all;
use bedrock_emulator::sigv4::{self, SignableRequest};
use bedrock_emulator::{EmulatorConfig, RunningEmulator, clock};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

async fn send(
    emulator: &RunningEmulator,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(emulator.local_addr()).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(name, _)| name == "host") {
        request.push_str(&format!("host: {}\r\n", emulator.local_addr()));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

/// Signs with the emulator's own SigV4 code, as a stand-in for a client.
fn signed_headers(
    config: &EmulatorConfig,
    emulator: &RunningEmulator,
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let amz_date = clock::format_amz_date(clock::unix_now());
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), emulator.local_addr().to_string()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    let names: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let request = SignableRequest {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        body,
    };
    let canonical = sigv4::canonical_request(&request, &names);
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/bedrock/aws4_request", config.region);
    let to_sign = sigv4::string_to_sign(&amz_date, &scope, &canonical);
    let key = sigv4::signing_key(&config.secret_access_key, date, &config.region, "bedrock");
    let signature = sigv4::sign(&key, &to_sign);
    headers.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            config.access_key_id,
            names.join(";")
        ),
    ));
    headers
}

async fn start() -> (EmulatorConfig, RunningEmulator) {
    let config = EmulatorConfig::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let emulator = RunningEmulator::start(config.clone(), listener)
        .await
        .unwrap();
    (config, emulator)
}

const CONVERSE_PATH: &str = "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";

#[tokio::test]
async fn malformed_bodies_are_validation_errors() {
    let (config, emulator) = start().await;
    let bodies: [&[u8]; 7] = [
        b"{",
        b"[]",
        b"\xff\xfe\x00",
        b"{\"messages\": \"nope\"}",
        b"{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": 5}]}]}",
        b"{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}], \"inferenceConfig\": {\"maxTokens\": \"lots\"}}",
        b"",
    ];
    for body in bodies {
        let headers = signed_headers(&config, &emulator, "POST", CONVERSE_PATH, body);
        let response = send(&emulator, "POST", CONVERSE_PATH, &headers, body).await;
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(
            response
                .header("x-amzn-ErrorType")
                .unwrap()
                .starts_with("ValidationException:")
        );
        assert!(response.json()["message"].is_string());
        assert!(response.header("x-amzn-RequestId").is_some());
    }
    let body = br#"{"messages":[{"role":"user","content":[{"text":"still alive"}]}]}"#;
    let headers = signed_headers(&config, &emulator, "POST", CONVERSE_PATH, body);
    let response = send(&emulator, "POST", CONVERSE_PATH, &headers, body).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["output"]["message"]["content"][0]["text"],
        "Echo: still alive"
    );
    emulator.stop().await;
}

#[tokio::test]
async fn unauthenticated_and_unknown_requests() {
    let (config, emulator) = start().await;
    let missing = send(&emulator, "POST", CONVERSE_PATH, &[], b"{}").await;
    assert_eq!(missing.status, 403);
    assert!(
        missing
            .header("x-amzn-ErrorType")
            .unwrap()
            .starts_with("MissingAuthenticationTokenException:")
    );

    let unknown = send(&emulator, "GET", "/nothing-here", &[], b"").await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown
            .header("x-amzn-ErrorType")
            .unwrap()
            .starts_with("UnknownOperationException:")
    );

    let garbage_auth = vec![(
        "authorization".to_string(),
        "AWS4-HMAC-SHA256 garbage".to_string(),
    )];
    let incomplete = send(&emulator, "POST", CONVERSE_PATH, &garbage_auth, b"{}").await;
    assert_eq!(incomplete.status, 400);
    assert!(
        incomplete
            .header("x-amzn-ErrorType")
            .unwrap()
            .starts_with("IncompleteSignatureException:")
    );

    let path = "/inference-profiles?maxResults=1&type=SYSTEM_DEFINED";
    let headers = signed_headers(&config, &emulator, "GET", path, b"");
    let listed = send(&emulator, "GET", path, &headers, b"").await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json()["inferenceProfileSummaries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(listed.json()["nextToken"].is_string());

    let observations = send(&emulator, "GET", "/_emulator/observations", &[], b"").await;
    assert_eq!(observations.status, 200);
    let observed = observations.json();
    assert_eq!(observed["operations"]["Converse"]["requests"], 2);
    assert_eq!(observed["operations"]["Converse"]["authFailures"], 2);
    assert_eq!(
        observed["operations"]["ListInferenceProfiles"]["requests"],
        1
    );
    assert_eq!(observed["lastAccessKeyId"], "AKIAEMULATOR");
    emulator.stop().await;
}

#[tokio::test]
async fn converse_stream_is_a_chunked_event_stream() {
    let (config, emulator) = start().await;
    let path = "/model/amazon.nova-lite-v1%3A0/converse-stream";
    let body = br#"{"messages":[{"role":"user","content":[{"text":"go [[emu:words=3]]"}]}]}"#;
    let headers = signed_headers(&config, &emulator, "POST", path, body);
    let response = send(&emulator, "POST", path, &headers, body).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let frames = decode_all(&response.body).unwrap();
    let text: String = frames
        .iter()
        .filter(|f| f.header_str(":event-type") == Some("contentBlockDelta"))
        .map(|f| {
            let payload: Value = serde_json::from_slice(&f.payload).unwrap();
            payload["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Echo: w1 w2 w3");
    assert_eq!(frames.len(), 8);
    emulator.stop().await;
}
