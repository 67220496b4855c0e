//! An OpenAI-compatible API in front of Amazon Bedrock.

pub mod auth;
pub mod bedrock;
pub mod catalog;
pub mod config;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod openai;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod translate;
