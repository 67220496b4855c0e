//! Pure translation between the OpenAI API and Bedrock's Converse API.

pub mod bedrock_error;
pub mod request;
pub mod response;
pub mod stream;
