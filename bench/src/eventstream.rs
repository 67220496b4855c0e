//! Just enough of the `application/vnd.amazon.eventstream` framing to tell which event each
//! frame of a ConverseStream reply is. Frame layout (big-endian): total length (u32),
//! headers length (u32), prelude CRC (u32), headers, payload, message CRC (u32). CRCs are not
//! checked: the emulator's own tests do that, and here it would only cost time.

use bytes::{Buf, BytesMut};

use crate::error::{BenchError, Result};

const PRELUDE_LEN: usize = 12;
const MESSAGE_CRC_LEN: usize = 4;

/// The headers that say what a frame carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameKind {
    /// `event`, `exception` or `error`.
    pub message_type: Option<String>,
    /// For events, e.g. `messageStart` or `contentBlockDelta`.
    pub event_type: Option<String>,
    /// For exceptions, e.g. `throttlingException`.
    pub exception_type: Option<String>,
}

/// Splits a byte stream into frames, however the bytes were chunked.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

fn malformed(message: &str) -> BenchError {
    BenchError::Reply(format!("event stream: {message}"))
}

fn be_u32(bytes: &[u8]) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word) as usize
}

/// Length of a header value of the given type, found at the start of `rest`.
fn value_len(value_type: u8, rest: &[u8]) -> Result<usize> {
    Ok(match value_type {
        0 | 1 => 0,
        2 => 1,
        3 => 2,
        4 => 4,
        5 | 8 => 8,
        9 => 16,
        6 | 7 => {
            let prefix = rest
                .get(..2)
                .ok_or_else(|| malformed("truncated header value"))?;
            2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]]))
        }
        other => return Err(malformed(&format!("unknown header type {other}"))),
    })
}

fn parse_headers(mut headers: &[u8]) -> Result<FrameKind> {
    let mut kind = FrameKind::default();
    while let Some((&name_len, rest)) = headers.split_first() {
        let name_len = usize::from(name_len);
        let name = rest
            .get(..name_len)
            .ok_or_else(|| malformed("truncated header name"))?;
        let (&value_type, rest) = rest[name_len..]
            .split_first()
            .ok_or_else(|| malformed("truncated header"))?;
        let len = value_len(value_type, rest)?;
        let value = rest
            .get(..len)
            .ok_or_else(|| malformed("truncated header value"))?;
        if value_type == 7 {
            let text = String::from_utf8_lossy(&value[2..]).into_owned();
            match name {
                b":message-type" => kind.message_type = Some(text),
                b":event-type" => kind.event_type = Some(text),
                b":exception-type" => kind.exception_type = Some(text),
                _ => {}
            }
        }
        headers = &rest[len..];
    }
    Ok(kind)
}

impl FrameReader {
    /// Adds bytes and returns the kinds of the frames they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<FrameKind>> {
        self.buffer.extend_from_slice(bytes);
        let mut kinds = Vec::new();
        while self.buffer.len() >= PRELUDE_LEN {
            let total = be_u32(&self.buffer[0..4]);
            let headers_len = be_u32(&self.buffer[4..8]);
            if total < PRELUDE_LEN + MESSAGE_CRC_LEN + headers_len {
                return Err(malformed("frame shorter than its headers"));
            }
            if self.buffer.len() < total {
                break;
            }
            kinds.push(parse_headers(
                &self.buffer[PRELUDE_LEN..PRELUDE_LEN + headers_len],
            )?);
            self.buffer.advance(total);
        }
        Ok(kinds)
    }

    /// Whether bytes of an unfinished frame are left over.
    pub fn has_partial_frame(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with string headers, CRCs left as zero.
    fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
        let mut encoded = Vec::new();
        for (name, value) in headers {
            encoded.push(name.len() as u8);
            encoded.extend_from_slice(name.as_bytes());
            encoded.push(7);
            encoded.extend_from_slice(&(value.len() as u16).to_be_bytes());
            encoded.extend_from_slice(value.as_bytes());
        }
        let total = PRELUDE_LEN + encoded.len() + payload.len() + MESSAGE_CRC_LEN;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(total as u32).to_be_bytes());
        bytes.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&[0; 4]);
        bytes
    }

    #[test]
    fn frames_are_recognised_across_chunk_boundaries() {
        let mut stream = frame(
            &[(":event-type", "messageStart"), (":message-type", "event")],
            b"{}",
        );
        stream.extend(frame(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            br#"{"delta":{"text":"Hi"}}"#,
        ));
        let mut reader = FrameReader::default();
        let mut kinds = Vec::new();
        for piece in stream.chunks(5) {
            kinds.extend(reader.push(piece).unwrap());
        }
        assert!(!reader.has_partial_frame());
        let events: Vec<_> = kinds.iter().map(|k| k.event_type.as_deref()).collect();
        assert_eq!(events, [Some("messageStart"), Some("contentBlockDelta")]);
        assert_eq!(kinds[1].message_type.as_deref(), Some("event"));
    }

    #[test]
    fn exceptions_and_other_header_types_are_read() {
        let mut bytes = frame(
            &[
                (":exception-type", "throttlingException"),
                (":message-type", "exception"),
            ],
            b"{}",
        );
        let kinds = FrameReader::default().push(&bytes).unwrap();
        assert_eq!(
            kinds[0].exception_type.as_deref(),
            Some("throttlingException")
        );
        // A bool header (type 0) and an int header (type 4) before a string header.
        let headers: Vec<u8> = [
            &[1u8, b'a', 0][..],
            &[1, b'b', 4, 0, 0, 0, 9],
            &[11],
            b":event-type",
            &[7, 0, 4],
            b"ping",
        ]
        .concat();
        bytes.clear();
        let total = PRELUDE_LEN + headers.len() + MESSAGE_CRC_LEN;
        bytes.extend_from_slice(&(total as u32).to_be_bytes());
        bytes.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&headers);
        bytes.extend_from_slice(&[0; 4]);
        let kinds = FrameReader::default().push(&bytes).unwrap();
        assert_eq!(kinds[0].event_type.as_deref(), Some("ping"));
    }

    #[test]
    fn impossible_lengths_are_errors() {
        let mut bytes = vec![0, 0, 0, 16, 0, 0, 0, 200];
        bytes.extend_from_slice(&[0; 8]);
        assert!(FrameReader::default().push(&bytes).is_err());
    }
}
