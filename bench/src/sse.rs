//! Just enough of server-sent events to follow an OpenAI chat completion stream.

use serde_json::Value;

use crate::error::{BenchError, Result};

/// What one `data:` event of a chat completion stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkKind {
    /// A chunk with non-empty `delta.content`.
    Content,
    /// Any other chunk (the role chunk, the finish chunk, usage).
    Other,
    /// `data: [DONE]`.
    Done,
    /// `data: {"error": ...}`.
    Error(String),
}

/// Splits a byte stream into events, however the bytes were chunked.
#[derive(Debug, Default)]
pub struct EventReader {
    buffer: Vec<u8>,
}

fn classify(data: &str) -> Result<ChunkKind> {
    if data == "[DONE]" {
        return Ok(ChunkKind::Done);
    }
    let chunk: Value = serde_json::from_str(data)
        .map_err(|error| BenchError::Reply(format!("SSE data is not JSON: {error}")))?;
    if let Some(error) = chunk.get("error") {
        return Ok(ChunkKind::Error(error.to_string()));
    }
    let has_content = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices.iter().any(|choice| {
                choice
                    .pointer("/delta/content")
                    .and_then(Value::as_str)
                    .is_some_and(|text| !text.is_empty())
            })
        });
    Ok(if has_content {
        ChunkKind::Content
    } else {
        ChunkKind::Other
    })
}

/// The `data` of one event (its `data:` lines joined), if it has any.
fn event_data(event: &str) -> Option<String> {
    let lines: Vec<&str> = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|value| value.strip_prefix(' ').unwrap_or(value))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|pair| pair == b"\n\n");
    let crlf = bytes.windows(4).position(|quad| quad == b"\r\n\r\n");
    match (lf, crlf) {
        (Some(a), Some(b)) if b < a => Some((b, 4)),
        (Some(a), _) => Some((a, 2)),
        (None, Some(b)) => Some((b, 4)),
        (None, None) => None,
    }
}

impl EventReader {
    /// Adds bytes and returns the kinds of the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<ChunkKind>> {
        self.buffer.extend_from_slice(bytes);
        let mut kinds = Vec::new();
        let mut consumed = 0;
        while let Some((end, separator)) = find_blank_line(&self.buffer[consumed..]) {
            let event = String::from_utf8_lossy(&self.buffer[consumed..consumed + end]);
            if let Some(data) = event_data(&event) {
                kinds.push(classify(&data)?);
            }
            consumed += end + separator;
        }
        self.buffer.drain(..consumed);
        Ok(kinds)
    }

    /// Whether bytes of an unfinished event are left over.
    pub fn has_partial_event(&self) -> bool {
        self.buffer.iter().any(|byte| !byte.is_ascii_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Echo: \"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn chunks_are_classified_across_boundaries() {
        let mut reader = EventReader::default();
        let mut kinds = Vec::new();
        for piece in STREAM.as_bytes().chunks(7) {
            kinds.extend(reader.push(piece).unwrap());
        }
        assert_eq!(
            kinds,
            [
                ChunkKind::Other,
                ChunkKind::Content,
                ChunkKind::Other,
                ChunkKind::Done
            ]
        );
        assert!(!reader.has_partial_event());
    }

    #[test]
    fn error_events_and_crlf_separators() {
        let mut reader = EventReader::default();
        let kinds = reader
            .push(b": comment\r\n\r\ndata: {\"error\":{\"message\":\"slow down\"}}\r\n\r\ndata: {")
            .unwrap();
        assert_eq!(kinds.len(), 1);
        assert!(matches!(&kinds[0], ChunkKind::Error(message) if message.contains("slow down")));
        assert!(reader.has_partial_event());
        assert!(reader.push(b"\n\n").is_err());
    }
}
