//! One request of each kind before measuring, so that a wrong key, URL or signature fails
//! the run at once with a clear message instead of as a table full of errors.

use serde_json::Value;

use crate::connection::{Connection, expect_ok, read_to_end};
use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::requests::PreparedRequest;
use crate::stream_follow::{StreamWire, follow};

/// Where a reply's text sits: `/output/message/content/0/text` for Converse,
/// `/choices/0/message/content` for a chat completion.
pub const CONVERSE_TEXT: &str = "/output/message/content/0/text";
pub const CHAT_COMPLETION_TEXT: &str = "/choices/0/message/content";

/// Sends a non-streaming request and checks that the reply is the emulator's echo.
pub async fn check_unary(
    what: &str,
    endpoint: &Endpoint,
    request: &PreparedRequest,
    text_pointer: &str,
) -> Result<()> {
    let failed = |reason: String| BenchError::Reply(format!("{what}: {reason}"));
    let mut connection = Connection::open(endpoint).await?;
    let response = connection.send(request.to_http()).await?;
    let body = read_to_end(
        expect_ok(response)
            .await
            .map_err(|e| failed(e.to_string()))?,
    )
    .await?;
    let reply: Value = serde_json::from_slice(&body)
        .map_err(|error| failed(format!("the reply is not JSON: {error}")))?;
    match reply.pointer(text_pointer).and_then(Value::as_str) {
        Some(text) if text.starts_with("Echo:") => Ok(()),
        _ => Err(failed(format!("unexpected reply {reply}"))),
    }
}

/// Sends a streaming request and checks that it carries content and ends properly.
pub async fn check_stream(
    what: &str,
    endpoint: &Endpoint,
    request: &PreparedRequest,
    wire: StreamWire,
) -> Result<()> {
    let failed = |reason: String| BenchError::Reply(format!("{what}: {reason}"));
    let mut connection = Connection::open(endpoint).await?;
    let response = connection.send(request.to_http()).await?;
    let body = expect_ok(response)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let timeline = follow(body, wire, |_| {})
        .await
        .map_err(|e| failed(e.to_string()))?;
    match timeline.first_content {
        Some(_) => Ok(()),
        None => Err(failed("the stream carried no content".into())),
    }
}
