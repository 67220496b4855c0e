//! Following a streamed reply to its end, noting when the first event and the first content
//! arrived: OpenAI server-sent events from the gateway, AWS event-stream frames from the
//! emulator.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::{BenchError, Result};
use crate::eventstream::FrameReader;
use crate::sse::{ChunkKind, EventReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamWire {
    /// `text/event-stream` chat completion chunks, ending with `data: [DONE]`.
    OpenAiSse,
    /// ConverseStream frames, ending with the `metadata` event.
    BedrockEventStream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Event,
    Content,
    Finished,
}

enum Decoder {
    Sse(EventReader),
    EventStream(FrameReader),
}

impl Decoder {
    fn new(wire: StreamWire) -> Decoder {
        match wire {
            StreamWire::OpenAiSse => Decoder::Sse(EventReader::default()),
            StreamWire::BedrockEventStream => Decoder::EventStream(FrameReader::default()),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Signal>> {
        match self {
            Decoder::Sse(reader) => reader
                .push(bytes)?
                .into_iter()
                .map(|kind| match kind {
                    ChunkKind::Content => Ok(Signal::Content),
                    ChunkKind::Other => Ok(Signal::Event),
                    ChunkKind::Done => Ok(Signal::Finished),
                    ChunkKind::Error(message) => {
                        Err(BenchError::Reply(format!("error event: {message}")))
                    }
                })
                .collect(),
            Decoder::EventStream(reader) => reader
                .push(bytes)?
                .into_iter()
                .map(|kind| match kind.message_type.as_deref() {
                    Some("event") | None => Ok(match kind.event_type.as_deref() {
                        Some("contentBlockDelta") => Signal::Content,
                        Some("metadata") => Signal::Finished,
                        _ => Signal::Event,
                    }),
                    Some(other) => Err(BenchError::Reply(format!(
                        "{other} frame: {}",
                        kind.exception_type.unwrap_or_default()
                    ))),
                })
                .collect(),
        }
    }

    fn has_leftover(&self) -> bool {
        match self {
            Decoder::Sse(reader) => reader.has_partial_event(),
            Decoder::EventStream(reader) => reader.has_partial_frame(),
        }
    }
}

/// When things happened in one stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamTimeline {
    /// When the first event with reply text arrived.
    pub first_content: Option<Instant>,
}

/// Reads a streamed reply to its end and checks that it ended properly. `on_first_event`
/// runs once, as soon as the first event has arrived.
pub async fn follow(
    mut body: Incoming,
    wire: StreamWire,
    on_first_event: impl FnOnce(Instant),
) -> Result<StreamTimeline> {
    let mut decoder = Decoder::new(wire);
    let mut on_first_event = Some(on_first_event);
    let mut first_event = None;
    let mut first_content = None;
    let mut finished = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let signals = decoder.feed(&data)?;
        if signals.is_empty() {
            continue;
        }
        let now = Instant::now();
        if first_event.is_none() {
            first_event = Some(now);
            if let Some(callback) = on_first_event.take() {
                callback(now);
            }
        }
        for signal in signals {
            match signal {
                Signal::Content if first_content.is_none() => first_content = Some(now),
                Signal::Finished => finished = true,
                _ => {}
            }
        }
    }
    match first_event {
        Some(_) if finished && !decoder.has_leftover() => Ok(StreamTimeline { first_content }),
        Some(_) => Err(BenchError::Reply("the stream ended early".into())),
        None => Err(BenchError::Reply("the stream carried no event".into())),
    }
}
