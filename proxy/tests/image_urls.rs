//! http(s) image URLs fetched by the gateway from a local image server, the
//! images checked where they arrive: in the Bedrock emulator's echo.
//!
//! The image server listens on loopback, which the gateway refuses by default,
//! so the tests that fetch from it allow `127.0.0.0/8` explicitly.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bedrock_emulator::RunningEmulator;
use bedrock_gateway_proxy::server::RunningGateway;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

use support::{emulator, metrics_text};

const KEY: &str = "image-url-key";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const ALLOW_LOOPBACK: [&str; 2] = ["--image-url-allow-cidr", "127.0.0.0/8"];

/// A 1x1 PNG.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
/// An 8x8 grey baseline JPEG.
const JPEG_BASE64: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQH/wAALCAAIAAgBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAAP/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AP//Z";

fn decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("test image")
}

fn png() -> Vec<u8> {
    decode(PNG_BASE64)
}

fn jpeg() -> Vec<u8> {
    decode(JPEG_BASE64)
}

/// A small HTTP/1.1 server with canned answers, counting requests per path.
struct ImageServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ImageServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind image server");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let gate = Arc::new(Barrier::new(3));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let hits = counted.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, addr, hits, gate).await;
                });
            }
        });
        Self { addr, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn head(status: &str, content_type: &str, length: Option<usize>) -> Vec<u8> {
    let mut text =
        format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n");
    if let Some(length) = length {
        text.push_str(&format!("Content-Length: {length}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn redirect(location: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    gate: Arc<Barrier>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = socket.read(&mut buffer).await?;
        if read == 0 || request.len() > 16 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
        if request.first() == Some(&0x16) {
            // A TLS ClientHello: this server speaks plain HTTP only.
            socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;

    let with_body = |mut head: Vec<u8>, body: &[u8]| {
        head.extend_from_slice(body);
        head
    };
    let answer = match path.as_str() {
        // Content types lie on purpose: the gateway must go by the bytes.
        "/cat.png" => with_body(head("200 OK", "text/plain", Some(png().len())), &png()),
        "/photo.jpg" => with_body(
            head("200 OK", "application/octet-stream", Some(jpeg().len())),
            &jpeg(),
        ),
        "/page.html" => {
            let page = b"<html><body>not an image</body></html>";
            with_body(head("200 OK", "image/png", Some(page.len())), page)
        }
        "/missing.png" => with_body(head("404 Not Found", "text/plain", Some(9)), b"not found"),
        "/declared-huge.png" => head("200 OK", "image/png", Some(50 * 1024 * 1024)),
        "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-file" => redirect("file:///etc/passwd"),
        "/to-ipv6-loopback" => redirect(&format!("http://[::1]:{}/cat.png", addr.port())),
        "/gate.png" => {
            // Answers only once three requests wait here at the same time.
            gate.wait().await;
            with_body(head("200 OK", "image/png", Some(png().len())), &png())
        }
        "/endless.png" => {
            // No length, and more data than any limit: the gateway must stop reading.
            socket.write_all(&head("200 OK", "image/png", None)).await?;
            socket.write_all(&png()).await?;
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..(64 * 1024 * 1024 / chunk.len()) {
                socket.write_all(&chunk).await?;
            }
            return Ok(());
        }
        "/slow.png" => {
            socket
                .write_all(&head("200 OK", "image/png", Some(4096)))
                .await?;
            socket.write_all(&png()[..8]).await?;
            tokio::time::sleep(Duration::from_secs(120)).await;
            return Ok(());
        }
        path if path.starts_with("/hop/") => {
            let remaining: usize = path["/hop/".len()..].parse().unwrap_or(0);
            if remaining == 0 {
                redirect("/cat.png")
            } else if remaining.is_multiple_of(2) {
                // Absolute and relative locations alternate.
                redirect(&format!("http://{addr}/hop/{}", remaining - 1))
            } else {
                redirect(&format!("/hop/{}", remaining - 1))
            }
        }
        _ => with_body(head("404 Not Found", "text/plain", Some(0)), b""),
    };
    socket.write_all(&answer).await?;
    socket.shutdown().await
}

async fn gateway(emulator: &RunningEmulator, extra: &[&str]) -> RunningGateway {
    let flags = [&["--api-keys", KEY, "--workers", "2"], extra].concat();
    support::gateway(emulator, &flags).await
}

fn image_chat(urls: &[String], stream: bool) -> Value {
    let mut parts = vec![json!({"type": "text", "text": "look"})];
    parts.extend(
        urls.iter()
            .map(|url| json!({"type": "image_url", "image_url": {"url": url, "detail": "auto"}})),
    );
    json!({"model": MODEL, "stream": stream, "messages": [
        {"role": "system", "content": "You describe images."},
        {"role": "user", "content": parts}
    ]})
}

async fn post_chat(gateway: &RunningGateway, body: &Value) -> reqwest::Response {
    support::post_chat_as(gateway, KEY, body).await
}

async fn reply_text(gateway: &RunningGateway, urls: &[String]) -> String {
    let response = post_chat(gateway, &image_chat(urls, false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned()
}

/// The 400 for a refused image: its `param` and message.
async fn refusal(gateway: &RunningGateway, urls: &[String]) -> (String, String) {
    let response = post_chat(gateway, &image_chat(urls, false)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    (
        body["error"]["param"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn fetched(count: usize) -> String {
    format!("bedrock_gateway_image_fetches_total{{outcome=\"fetched\"}} {count}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_and_jpeg_urls_reach_bedrock_as_image_blocks() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &ALLOW_LOOPBACK).await;
    let text = reply_text(
        &gateway,
        &[images.url("/cat.png"), images.url("/photo.jpg")],
    )
    .await;
    assert_eq!(
        text,
        format!(
            "Echo: look [image/png {} bytes] [image/jpeg {} bytes]",
            png().len(),
            jpeg().len()
        )
    );
    assert_eq!(emulator.observations().converse_requests(), 1);
    assert_eq!(
        emulator.observations().last_image_sha256,
        [sha256_hex(&png()), sha256_hex(&jpeg())],
        "Bedrock got exactly the bytes the image server sent"
    );
    assert_eq!(images.hits("/cat.png"), 1);
    assert_eq!(images.hits("/photo.jpg"), 1);
    assert!(metrics_text(&gateway).await.contains(&fetched(2)));
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_completions_carry_fetched_images_too() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &ALLOW_LOOPBACK).await;
    let response = post_chat(&gateway, &image_chat(&[images.url("/photo.jpg")], true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let content: String = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).ok()?;
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        content,
        format!("Echo: look [image/jpeg {} bytes]", jpeg().len())
    );
    assert_eq!(emulator.observations().converse_stream_requests(), 1);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_by_default_without_a_connection() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &[]).await;
    let localhost = images.url("/cat.png").replace("127.0.0.1", "localhost");
    for url in [images.url("/cat.png"), localhost] {
        let (param, message) = refusal(&gateway, std::slice::from_ref(&url)).await;
        assert_eq!(param, "messages[1].content[1].image_url", "{url}");
        assert!(message.contains("a loopback address"), "{message}");
    }
    let (_, message) = refusal(
        &gateway,
        &["http://169.254.169.254/latest/meta-data/".into()],
    )
    .await;
    assert!(message.contains("link-local"), "{message}");
    assert_eq!(images.total_hits(), 0);
    assert_eq!(emulator.observations().converse_requests(), 0);
    let metrics = metrics_text(&gateway).await;
    assert!(
        metrics.contains("bedrock_gateway_image_fetches_total{outcome=\"refused_address\"} 3"),
        "{metrics}"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_up_to_the_limit_and_each_hop_is_checked() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &ALLOW_LOOPBACK).await;
    // /hop/2 -> /hop/1 -> /hop/0 -> /cat.png: three redirects, the default limit.
    let text = reply_text(&gateway, &[images.url("/hop/2")]).await;
    assert_eq!(
        text,
        format!("Echo: look [image/png {} bytes]", png().len())
    );
    assert_eq!(images.hits("/cat.png"), 1);

    let (param, message) =
        refusal(&gateway, &[images.url("/photo.jpg"), images.url("/hop/3")]).await;
    assert_eq!(param, "messages[1].content[2].image_url");
    assert!(message.contains("more than 3 redirects"), "{message}");

    let (_, message) = refusal(&gateway, &[images.url("/to-metadata")]).await;
    assert!(
        message.contains("169.254.169.254 is a link-local address"),
        "{message}"
    );
    let (_, message) = refusal(&gateway, &[images.url("/to-ipv6-loopback")]).await;
    assert!(message.contains("loopback"), "{message}");
    let (_, message) = refusal(&gateway, &[images.url("/to-file")]).await;
    assert!(message.contains("'file'"), "{message}");
    assert_eq!(
        images.hits("/cat.png"),
        1,
        "refused hops never reach the image"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_limit_is_configurable() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(
        &emulator,
        &[
            "--image-url-allow-cidr",
            "127.0.0.0/8",
            "--image-url-max-redirects",
            "0",
        ],
    )
    .await;
    let (_, message) = refusal(&gateway, &[images.url("/hop/0")]).await;
    assert!(message.contains("more than 0 redirects"), "{message}");
    assert_eq!(images.hits("/cat.png"), 0);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_cut_off_at_the_limit() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(
        &emulator,
        &[
            "--image-url-allow-cidr",
            "127.0.0.0/8",
            "--image-url-max-bytes",
            "100000",
        ],
    )
    .await;
    for path in ["/declared-huge.png", "/endless.png"] {
        let (_, message) = refusal(&gateway, &[images.url(path)]).await;
        assert!(
            message.contains("exceeds the limit of 100000 bytes"),
            "{path}: {message}"
        );
    }
    let metrics = metrics_text(&gateway).await;
    assert!(
        metrics.contains("bedrock_gateway_image_fetches_total{outcome=\"too_large\"} 2"),
        "{metrics}"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_of_one_request_are_capped_in_total() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let limit = (png().len() * 3 / 2).to_string();
    let gateway = gateway(
        &emulator,
        &[
            "--image-url-allow-cidr",
            "127.0.0.0/8",
            "--image-url-max-request-bytes",
            &limit,
        ],
    )
    .await;
    assert_eq!(
        reply_text(&gateway, &[images.url("/cat.png")]).await,
        format!("Echo: look [image/png {} bytes]", png().len())
    );
    let (_, message) = refusal(&gateway, &[images.url("/cat.png"), images.url("/cat.png")]).await;
    assert!(
        message.contains(&format!("limit of {limit} bytes in total")),
        "{message}"
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hit_the_time_limit() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(
        &emulator,
        &[
            "--image-url-allow-cidr",
            "127.0.0.0/8",
            "--image-url-timeout-seconds",
            "2",
        ],
    )
    .await;
    let (param, message) = refusal(&gateway, &[images.url("/slow.png")]).await;
    assert_eq!(param, "messages[1].content[1].image_url");
    assert!(message.contains("longer than 2 seconds"), "{message}");
    assert!(
        metrics_text(&gateway)
            .await
            .contains("bedrock_gateway_image_fetches_total{outcome=\"timeout\"} 1")
    );
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_images_statuses_and_bad_urls_are_refused_with_the_reason() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &ALLOW_LOOPBACK).await;
    let (_, message) = refusal(&gateway, &[images.url("/page.html")]).await;
    assert!(
        message.contains("not a png, jpeg, gif or webp image"),
        "{message}"
    );
    let (_, message) = refusal(&gateway, &[images.url("/missing.png")]).await;
    assert!(message.contains("HTTP 404"), "{message}");
    let with_userinfo = images
        .url("/cat.png")
        .replace("http://", "http://user:secret@");
    let (_, message) = refusal(&gateway, &[with_userinfo]).await;
    assert!(message.contains("credentials in URLs"), "{message}");
    // TLS to a plain HTTP server fails in the handshake.
    let (_, message) = refusal(
        &gateway,
        &[images.url("/cat.png").replace("http://", "https://")],
    )
    .await;
    assert!(message.contains("TLS handshake"), "{message}");
    assert_eq!(images.hits("/cat.png"), 0);
    assert_eq!(emulator.observations().converse_requests(), 0);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_of_a_request_are_fetched_concurrently() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(&emulator, &ALLOW_LOOPBACK).await;
    // The server answers /gate.png only while three requests for it are open
    // at once: fetched one after the other, they would time out instead.
    let urls = vec![images.url("/gate.png"); 3];
    let text = reply_text(&gateway, &urls).await;
    assert_eq!(text.matches("[image/png").count(), 3, "{text}");
    assert_eq!(images.hits("/gate.png"), 3);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_can_be_turned_off() {
    let emulator = emulator().await;
    let images = ImageServer::start().await;
    let gateway = gateway(
        &emulator,
        &[
            "--image-url-allow-cidr",
            "127.0.0.0/8",
            "--image-url-fetch=false",
        ],
    )
    .await;
    let (param, message) = refusal(&gateway, &[images.url("/cat.png")]).await;
    assert_eq!(param, "messages[1].content[1]");
    assert!(
        message.contains("send the image inline as a data: URL"),
        "{message}"
    );
    assert_eq!(images.total_hits(), 0);
    gateway.shutdown().await.unwrap();
    emulator.stop().await;
}
