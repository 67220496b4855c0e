//! The BedrockGateway operator: reconciles `BedrockGateway` resources into a
//! running bedrock-gateway-proxy and wires it into Open WebUI.

pub mod app;
pub mod cache;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod openwebui_admin;
pub mod resources;
pub mod telemetry;
pub mod wiring;
pub mod workload;
