//! Pure translation between the OpenAI API and Bedrock's Converse API.

pub mod bedrock_error;
pub mod content;
pub mod embeddings;
pub mod guardrail;
pub mod reasoning;
pub mod request;
pub mod response;
pub mod stream;
pub mod structured;
pub mod tools;

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Most JSON structure (`{`, `[`, `,` and `:` outside strings) a request body
/// may hold. Parsed values take far more memory than their text (a 20 MB array
/// of zeros grew the proxy by over 1 GB), so the structure, not only the size,
/// is bounded. Long conversations, large tool lists and images (strings) stay
/// far below it, and so do OpenAI's 300,000 embedding tokens per request.
pub const MAX_JSON_STRUCTURE: usize = 400_000;

/// The structural characters of a JSON text outside its strings, counted up
/// to `limit + 1`.
pub fn json_structure(text: &[u8], limit: usize) -> usize {
    let mut count = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' | b',' | b':' => {
                    count += 1;
                    if count > limit {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    count
}

pub fn too_much_structure(limit: usize) -> ApiError {
    ApiError::invalid(
        format!(
            "The request holds more than {limit} JSON elements; split it into smaller requests."
        ),
        None,
    )
}

/// Parses a JSON request body, naming the offending field on failure.
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if json_structure(body, MAX_JSON_STRUCTURE) > MAX_JSON_STRUCTURE {
        return Err(too_much_structure(MAX_JSON_STRUCTURE));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("The request body is not valid JSON: {inner}"), None)
        } else if path == "." {
            ApiError::invalid(format!("Invalid request body: {inner}"), None)
        } else {
            ApiError::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_counted_outside_strings_only() {
        assert_eq!(json_structure(br#"{"a": [1, 2], "b": {}}"#, 100), 7);
        assert_eq!(json_structure(br#"{"t": "a, b: [c] {d}"}"#, 100), 2);
        assert_eq!(json_structure(br#"["q\"[,", 1]"#, 100), 2);
        assert_eq!(json_structure(b"[[[[[[", 3), 4);
    }

    #[test]
    fn bodies_with_too_much_structure_are_refused_before_parsing() {
        let within = format!("[{}]", vec!["0"; MAX_JSON_STRUCTURE].join(","));
        assert!(parse_json_body::<Vec<u8>>(within.as_bytes()).is_ok());
        let beyond = format!("[{}]", vec!["0"; MAX_JSON_STRUCTURE + 1].join(","));
        let error = parse_json_body::<Vec<u8>>(beyond.as_bytes()).unwrap_err();
        assert_eq!(error.status().as_u16(), 400);
        assert!(error.to_string().contains("more than 400000 JSON elements"));
    }
}
