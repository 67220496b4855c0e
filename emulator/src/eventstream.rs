//! `application/vnd.amazon.eventstream` framing.
//!
//! Frame layout (all integers big-endian):
//! total length (u32) | headers length (u32) | prelude CRC32 | headers | payload | message CRC32.
//! The emulator only sends string headers; the decoder understands every header type so it can
//! check frames produced elsewhere.

use crate::error::Error;

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

const PRELUDE_LEN: usize = 8;
const PRELUDE_AND_CRC_LEN: usize = 12;
const MESSAGE_CRC_LEN: usize = 4;
const MIN_FRAME_LEN: usize = PRELUDE_AND_CRC_LEN + MESSAGE_CRC_LEN;
const STRING_TYPE: u8 = 7;

/// A decoded header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The value of a string header, if present.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(key, value)| match value {
            HeaderValue::String(text) if key == name => Some(text.as_str()),
            _ => None,
        })
    }
}

/// Encodes one frame with string headers.
///
/// Header names longer than 255 bytes or values longer than 65535 bytes are truncated at a
/// character boundary (so the header stays UTF-8); the emulator only uses short fixed names, so
/// this never happens in practice.
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut header_bytes = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        let name = truncate(name, u8::MAX as usize).as_bytes();
        let value = truncate(value, u16::MAX as usize).as_bytes();
        header_bytes.push(name.len() as u8);
        header_bytes.extend_from_slice(name);
        header_bytes.push(STRING_TYPE);
        header_bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
        header_bytes.extend_from_slice(value);
    }
    let total_len = MIN_FRAME_LEN + header_bytes.len() + payload.len();
    let mut frame = Vec::with_capacity(total_len);
    frame.extend_from_slice(&(total_len as u32).to_be_bytes());
    frame.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&header_bytes);
    frame.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&message_crc.to_be_bytes());
    frame
}

fn truncate(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// Decodes the first frame in `bytes`, returning it and the number of bytes consumed.
pub fn decode_frame(bytes: &[u8]) -> Result<(Frame, usize), Error> {
    if bytes.len() < MIN_FRAME_LEN {
        return Err(Error::Frame("shorter than the minimum frame"));
    }
    let total_len = read_u32(bytes, 0)? as usize;
    let headers_len = read_u32(bytes, 4)? as usize;
    if total_len < MIN_FRAME_LEN || bytes.len() < total_len {
        return Err(Error::Frame("total length does not fit the buffer"));
    }
    if headers_len > total_len - MIN_FRAME_LEN {
        return Err(Error::Frame("headers length exceeds the frame"));
    }
    if read_u32(bytes, PRELUDE_LEN)? != crc32fast::hash(&bytes[..PRELUDE_LEN]) {
        return Err(Error::Frame("prelude CRC mismatch"));
    }
    let crc_offset = total_len - MESSAGE_CRC_LEN;
    if read_u32(bytes, crc_offset)? != crc32fast::hash(&bytes[..crc_offset]) {
        return Err(Error::Frame("message CRC mismatch"));
    }
    let headers_end = PRELUDE_AND_CRC_LEN + headers_len;
    let headers = decode_headers(&bytes[PRELUDE_AND_CRC_LEN..headers_end])?;
    let payload = bytes[headers_end..crc_offset].to_vec();
    Ok((Frame { headers, payload }, total_len))
}

/// Decodes a buffer holding a sequence of complete frames.
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Frame>, Error> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = decode_frame(bytes)?;
        frames.push(frame);
        bytes = &bytes[used..];
    }
    Ok(frames)
}

fn decode_headers(mut bytes: &[u8]) -> Result<Vec<(String, HeaderValue)>, Error> {
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name_len = usize::from(take(&mut bytes, 1)?[0]);
        let name = String::from_utf8(take(&mut bytes, name_len)?.to_vec())
            .map_err(|_| Error::Frame("header name is not UTF-8"))?;
        let value_type = take(&mut bytes, 1)?[0];
        let value = match value_type {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(take_array(&mut bytes)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(take_array(&mut bytes)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(take_array(&mut bytes)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(take_array(&mut bytes)?)),
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes(take_array(&mut bytes)?));
                let raw = take(&mut bytes, len)?.to_vec();
                if value_type == 6 {
                    HeaderValue::Bytes(raw)
                } else {
                    HeaderValue::String(
                        String::from_utf8(raw)
                            .map_err(|_| Error::Frame("string header is not UTF-8"))?,
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(take_array(&mut bytes)?)),
            9 => HeaderValue::Uuid(take_array(&mut bytes)?),
            _ => return Err(Error::Frame("unknown header value type")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], Error> {
    if bytes.len() < len {
        return Err(Error::Frame("header runs past the headers section"));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(bytes, N)?);
    Ok(out)
}

fn read_u32(bytes: &[u8], offset: usize) -> Result<u32, Error> {
    let slice = bytes
        .get(offset..offset + 4)
        .ok_or(Error::Frame("truncated integer"))?;
    let mut raw = [0u8; 4];
    raw.copy_from_slice(slice);
    Ok(u32::from_be_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn empty_frame_matches_the_reference_vector() {
        assert_eq!(
            encode_frame(&[], b""),
            from_hex("000000100000000005c248eb7d98c8ff")
        );
    }

    #[test]
    fn frame_with_header_and_payload_matches_byte_by_byte() {
        let expected =
            from_hex("0000002200000010c394b3690b3a6576656e742d74797065070001787b7df09f1afd");
        let encoded = encode_frame(&[(":event-type", "x")], b"{}");
        assert_eq!(encoded.len(), expected.len());
        for (index, (got, want)) in encoded.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "byte {index}");
        }
    }

    #[test]
    fn round_trip() {
        let headers = [
            (":event-type", "contentBlockDelta"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ];
        let payload = br#"{"contentBlockIndex":0,"delta":{"text":"hi "}}"#;
        let encoded = encode_frame(&headers, payload);
        let (frame, used) = decode_frame(&encoded).unwrap();
        assert_eq!(used, encoded.len());
        assert_eq!(frame.payload, payload);
        assert_eq!(frame.header_str(":event-type"), Some("contentBlockDelta"));
        assert_eq!(frame.header_str(":message-type"), Some("event"));
        assert_eq!(frame.headers.len(), 3);
    }

    #[test]
    fn decodes_a_sequence() {
        let mut buffer = encode_frame(&[("a", "1")], b"one");
        buffer.extend(encode_frame(&[("b", "2")], b"two"));
        let frames = decode_all(&buffer).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].payload, b"two");
    }

    #[test]
    fn detects_payload_corruption() {
        let mut encoded = encode_frame(&[(":event-type", "x")], b"{}");
        let payload_index = encoded.len() - 5;
        encoded[payload_index] ^= 0x01;
        assert_eq!(
            decode_frame(&encoded),
            Err(Error::Frame("message CRC mismatch"))
        );
    }

    #[test]
    fn detects_prelude_corruption() {
        let mut encoded = encode_frame(&[], b"abc");
        encoded[7] ^= 0x01;
        assert_eq!(
            decode_frame(&encoded),
            Err(Error::Frame("prelude CRC mismatch"))
        );
    }

    #[test]
    fn rejects_truncated_input_without_panicking() {
        let encoded = encode_frame(&[("name", "value")], b"payload");
        for len in 0..encoded.len() {
            assert!(decode_frame(&encoded[..len]).is_err());
        }
    }

    #[test]
    fn decodes_non_string_header_types() {
        let headers: Vec<u8> = [
            vec![1, b'a', 0],
            vec![1, b'b', 4, 0, 0, 1, 0],
            vec![1, b'c', 6, 0, 2, 9, 8],
        ]
        .concat();
        let total = (MIN_FRAME_LEN + headers.len()) as u32;
        let mut frame = total.to_be_bytes().to_vec();
        frame.extend((headers.len() as u32).to_be_bytes());
        frame.extend(crc32fast::hash(&frame).to_be_bytes());
        frame.extend(&headers);
        frame.extend(crc32fast::hash(&frame).to_be_bytes());
        let (decoded, _) = decode_frame(&frame).unwrap();
        assert_eq!(
            decoded.headers,
            vec![
                ("a".to_string(), HeaderValue::Bool(true)),
                ("b".to_string(), HeaderValue::Int(256)),
                ("c".to_string(), HeaderValue::Bytes(vec![9, 8])),
            ]
        );
    }
}
