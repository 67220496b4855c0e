//! Standard base64 (RFC 4648 alphabet), as restJson1 encodes blob members.

/// Why a base64 string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Problem {
    /// A character outside `A-Z a-z 0-9 + /` (or `=` padding) at this byte offset.
    InvalidCharacter(usize),
    /// The length cannot be a base64 encoding (one spare character, or misplaced padding).
    InvalidLength,
}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Number of bytes `encoded` decodes to, without decoding it (assumes it is valid).
pub fn decoded_len(encoded: &str) -> usize {
    let data = encoded.trim_end_matches('=').len();
    data / 4 * 3 + (data % 4).saturating_sub(1)
}

/// Decodes `encoded`; padding is optional, but must be at the end when present.
pub fn decode(encoded: &str) -> Result<Vec<u8>, Base64Problem> {
    let bytes = encoded.as_bytes();
    let data_len = encoded.trim_end_matches('=').len();
    let padding = bytes.len() - data_len;
    if padding > 2 || (padding > 0 && !bytes.len().is_multiple_of(4)) || data_len % 4 == 1 {
        return Err(Base64Problem::InvalidLength);
    }
    let mut decoded = Vec::with_capacity(decoded_len(encoded));
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for (offset, &byte) in bytes[..data_len].iter().enumerate() {
        let value = sextet(byte).ok_or(Base64Problem::InvalidCharacter(offset))?;
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            decoded.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_padded_and_unpadded_input() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("aGk=").unwrap(), b"hi");
        assert_eq!(decode("aGk").unwrap(), b"hi");
        assert_eq!(decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode("AAEC/+8=").unwrap(), [0, 1, 2, 255, 239]);
        assert_eq!(decode("YQ==").unwrap(), b"a");
    }

    #[test]
    fn refuses_invalid_input() {
        assert_eq!(decode("a"), Err(Base64Problem::InvalidLength));
        assert_eq!(decode("aGk=="), Err(Base64Problem::InvalidLength));
        assert_eq!(decode("Y==="), Err(Base64Problem::InvalidLength));
        assert_eq!(decode("aG=k"), Err(Base64Problem::InvalidCharacter(2)));
        assert_eq!(decode("aGk!"), Err(Base64Problem::InvalidCharacter(3)));
        assert_eq!(decode("aG k"), Err(Base64Problem::InvalidCharacter(2)));
    }

    #[test]
    fn predicts_the_decoded_length() {
        for text in ["", "a", "hi", "abc", "abcd", "hello world"] {
            let encoded: &str = match text {
                "" => "",
                "a" => "YQ==",
                "hi" => "aGk=",
                "abc" => "YWJj",
                "abcd" => "YWJjZA==",
                _ => "aGVsbG8gd29ybGQ=",
            };
            assert_eq!(decoded_len(encoded), text.len(), "{text}");
            assert_eq!(decode(encoded).unwrap(), text.as_bytes());
        }
    }
}
