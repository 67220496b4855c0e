//! What is compared: the emulator called directly and the gateway in front of it.

use std::sync::Arc;

use crate::cli::Args;
use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::phases::progress;
use crate::preflight::{self, CHAT_COMPLETION_TEXT, CONVERSE_TEXT};
use crate::requests::{self, Delivery, Payload, PreparedRequest};
use crate::signing::AwsSigner;
use crate::stream_follow::StreamWire;

/// The prompt of every measured request except the held streams.
const PROMPT: &str = "How long does a round trip through the gateway take?";

/// The two ways a request reaches the emulator: signed and sent to it directly, or sent to
/// the gateway; with the requests prepared for each.
pub struct Paths {
    pub emulator: Endpoint,
    pub gateway: Endpoint,
    pub direct_unary: Arc<PreparedRequest>,
    pub gateway_unary: Arc<PreparedRequest>,
    pub direct_stream: Arc<PreparedRequest>,
    pub gateway_stream: Arc<PreparedRequest>,
    /// Non-streaming requests with a few tools and a png besides the prompt.
    pub direct_mix: Arc<PreparedRequest>,
    pub gateway_mix: Arc<PreparedRequest>,
}

impl Paths {
    pub fn prepare(args: &Args) -> Result<Paths> {
        let emulator = Endpoint::parse(&args.emulator_url)?;
        let gateway = Endpoint::parse(&args.gateway_url)?;
        let signer = AwsSigner {
            access_key_id: args.access_key_id.clone(),
            secret_access_key: args.secret_access_key.clone(),
            region: args.region.clone(),
        };
        let direct = |delivery, payload| {
            requests::emulator_converse(&emulator, &signer, &args.model, PROMPT, delivery, payload)
                .map(Arc::new)
        };
        let through_gateway = |delivery, payload| {
            requests::gateway_chat(
                &gateway,
                &args.api_key,
                &args.model,
                PROMPT,
                delivery,
                payload,
            )
            .map(Arc::new)
        };
        Ok(Paths {
            direct_unary: direct(Delivery::Unary, Payload::Text)?,
            direct_stream: direct(Delivery::Streamed, Payload::Text)?,
            gateway_unary: through_gateway(Delivery::Unary, Payload::Text)?,
            gateway_stream: through_gateway(Delivery::Streamed, Payload::Text)?,
            direct_mix: direct(Delivery::Unary, Payload::ToolsAndImage)?,
            gateway_mix: through_gateway(Delivery::Unary, Payload::ToolsAndImage)?,
            emulator,
            gateway,
        })
    }

    pub async fn check(&self) -> Result<()> {
        progress("checking both paths with one request of each kind");
        preflight::check_unary(
            "emulator Converse",
            &self.emulator,
            &self.direct_unary,
            CONVERSE_TEXT,
        )
        .await?;
        preflight::check_unary(
            "gateway chat completion",
            &self.gateway,
            &self.gateway_unary,
            CHAT_COMPLETION_TEXT,
        )
        .await?;
        preflight::check_unary(
            "emulator Converse with tools and an image",
            &self.emulator,
            &self.direct_mix,
            CONVERSE_TEXT,
        )
        .await?;
        preflight::check_unary(
            "gateway chat completion with tools and an image",
            &self.gateway,
            &self.gateway_mix,
            CHAT_COMPLETION_TEXT,
        )
        .await?;
        preflight::check_stream(
            "emulator ConverseStream",
            &self.emulator,
            &self.direct_stream,
            StreamWire::BedrockEventStream,
        )
        .await?;
        preflight::check_stream(
            "gateway streamed chat completion",
            &self.gateway,
            &self.gateway_stream,
            StreamWire::OpenAiSse,
        )
        .await
    }
}
