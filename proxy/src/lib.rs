//! An OpenAI-compatible API in front of Amazon Bedrock.

pub mod assume_role;
pub mod auth;
pub mod bedrock;
pub mod caller_identity;
pub mod catalog;
pub mod config;
pub mod error;
pub mod image_fetch;
pub mod key_limits;
pub mod metrics;
pub mod middleware;
pub mod openai;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod translate;
