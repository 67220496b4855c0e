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
