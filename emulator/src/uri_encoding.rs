//! Percent-encoding as AWS SigV4 and the smithy HTTP bindings use it.

/// Encodes every byte except the RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub fn percent_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` sequences; malformed sequences are kept literally. Invalid UTF-8 is replaced.
pub fn percent_decode(value: &str, plus_is_space: bool) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => match (
                hex_value(bytes.get(index + 1)),
                hex_value(bytes.get(index + 2)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    index += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    let byte = *byte?;
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// Splits a raw query string into decoded `(key, value)` pairs, form-urlencoded style.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws() {
        assert_eq!(percent_encode("a-b_c.d~e", false), "a-b_c.d~e");
        assert_eq!(percent_encode("v1:0", false), "v1%3A0");
        assert_eq!(percent_encode("/model/x%3A0", true), "/model/x%253A0");
        assert_eq!(percent_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(percent_encode("é", false), "%C3%A9");
    }

    #[test]
    fn decodes_and_tolerates_garbage() {
        assert_eq!(percent_decode("v1%3A0", false), "v1:0");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%FF", false), "\u{FFFD}");
    }

    #[test]
    fn parses_queries() {
        assert_eq!(
            parse_query("b=2&a=x%20y&flag&&c="),
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y".into()),
                ("flag".into(), String::new()),
                ("c".into(), String::new()),
            ]
        );
    }
}
