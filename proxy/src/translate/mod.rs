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

/// Parses a JSON request body, naming the offending field on failure.
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
