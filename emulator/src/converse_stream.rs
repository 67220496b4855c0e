//! ConverseStream events, encoded as event-stream frames, and the order they are sent in.
//!
//! Blocks are streamed one after the other with their own `contentBlockIndex`: text and
//! reasoning as word deltas (Bedrock sends no `contentBlockStart` for them), tool uses as
//! `contentBlockStart` with the id and name, then input JSON fragments.

use serde_json::{Value, json};

use crate::converse::{ReplyBlock, ReplyPlan, next_delta_end};
use crate::eventstream::encode_frame;
use crate::faults::StreamError;
use crate::tools::{self, ToolCall};

/// Bedrock pads every event with a `p` field; clients must ignore it.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";

fn event_frame(event_type: &str, mut payload: Value) -> Vec<u8> {
    if let Value::Object(fields) = &mut payload {
        fields.insert("p".to_string(), Value::from(PADDING));
    }
    encode_frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

pub fn message_start() -> Vec<u8> {
    event_frame("messageStart", json!({"role": "assistant"}))
}

pub fn content_block_start(index: usize, call: &ToolCall) -> Vec<u8> {
    event_frame(
        "contentBlockStart",
        json!({
            "contentBlockIndex": index,
            "start": {"toolUse": {"toolUseId": call.tool_use_id, "name": call.name}},
        }),
    )
}

pub fn content_block_delta(index: usize, delta: Value) -> Vec<u8> {
    event_frame(
        "contentBlockDelta",
        json!({"contentBlockIndex": index, "delta": delta}),
    )
}

pub fn content_block_stop(index: usize) -> Vec<u8> {
    event_frame("contentBlockStop", json!({"contentBlockIndex": index}))
}

pub fn message_stop(stop_reason: &str) -> Vec<u8> {
    event_frame("messageStop", json!({"stopReason": stop_reason}))
}

pub fn metadata(plan: &ReplyPlan, latency_ms: u64) -> Vec<u8> {
    event_frame(
        "metadata",
        json!({"usage": plan.usage.to_json(), "metrics": {"latencyMs": latency_ms}}),
    )
}

pub fn exception(stream_error: &StreamError) -> Vec<u8> {
    let kind = stream_error.kind();
    let mut payload = json!({"message": kind.default_message()});
    if stream_error.member == "modelStreamErrorException" {
        payload["originalStatusCode"] = json!(500);
        payload["originalMessage"] = json!("The model produced an internal error.");
    }
    encode_frame(
        &[
            (":exception-type", stream_error.member),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// Where a content block's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `contentBlockStart` (tool use blocks only).
    Start,
    /// The delta starting at this byte of the block's streamed text.
    Delta { position: usize },
    /// The reasoning signature delta.
    Signature,
    /// `contentBlockStop`.
    Stop,
}

/// Position in the event sequence; `sent` counts the deltas already sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MessageStart,
    Block {
        block: usize,
        phase: Phase,
        sent: usize,
    },
    MessageStop,
    Metadata,
    Exception,
    Done,
}

/// What to send next (the frame is built lazily by [`encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    MessageStart,
    BlockStart {
        block: usize,
    },
    Delta {
        block: usize,
        start: usize,
        end: usize,
    },
    Signature {
        block: usize,
    },
    BlockStop {
        block: usize,
    },
    MessageStop,
    Metadata,
    Exception,
}

/// The text a block streams in deltas: reasoning and reply text word by word, tool input
/// JSON in fragments.
fn streamed_text(block: &ReplyBlock) -> &str {
    match block {
        ReplyBlock::Reasoning { text, .. } | ReplyBlock::Text(text) => text,
        ReplyBlock::ToolUse(call) => &call.input_json,
    }
}

fn delta_end(block: &ReplyBlock, position: usize) -> Option<usize> {
    match block {
        ReplyBlock::ToolUse(call) => tools::input_fragment_end(&call.input_json, position),
        _ => next_delta_end(streamed_text(block), position),
    }
}

/// The first step of block `block`, or the end of the message after the last block.
fn block_entry(plan: &ReplyPlan, block: usize, sent: usize) -> Step {
    match plan.blocks.get(block) {
        Some(ReplyBlock::ToolUse(_)) => Step::Block {
            block,
            phase: Phase::Start,
            sent,
        },
        Some(_) => Step::Block {
            block,
            phase: Phase::Delta { position: 0 },
            sent,
        },
        None if plan.faults.stream_error.is_some() => Step::Exception,
        None => Step::MessageStop,
    }
}

fn block_step(plan: &ReplyPlan, block: usize, phase: Phase, sent: usize) -> Option<(Emit, Step)> {
    let stream_error = plan.faults.stream_error.as_ref();
    if stream_error.is_some_and(|error| sent >= error.after) {
        return advance(plan, Step::Exception);
    }
    let current = plan.blocks.get(block)?;
    let next = |phase| Step::Block { block, phase, sent };
    match phase {
        Phase::Start => Some((
            Emit::BlockStart { block },
            next(Phase::Delta { position: 0 }),
        )),
        Phase::Delta { position } => match delta_end(current, position) {
            Some(end) => Some((
                Emit::Delta {
                    block,
                    start: position,
                    end,
                },
                Step::Block {
                    block,
                    phase: Phase::Delta { position: end },
                    sent: sent + 1,
                },
            )),
            None if matches!(current, ReplyBlock::Reasoning { .. }) => {
                block_step(plan, block, Phase::Signature, sent)
            }
            None => block_step(plan, block, Phase::Stop, sent),
        },
        Phase::Signature => Some((
            Emit::Signature { block },
            Step::Block {
                block,
                phase: Phase::Stop,
                sent: sent + 1,
            },
        )),
        Phase::Stop if stream_error.is_some() && block + 1 == plan.blocks.len() => {
            advance(plan, Step::Exception)
        }
        Phase::Stop => Some((
            Emit::BlockStop { block },
            block_entry(plan, block + 1, sent),
        )),
    }
}

/// Advances the event sequence: `messageStart`; per block, in order, its deltas (a reasoning
/// block ends with its signature; a tool use block starts with `contentBlockStart`) and
/// `contentBlockStop`; `messageStop`; `metadata`. With a scripted stream error: the same
/// events up to `after` deltas, then the exception instead of the rest.
pub fn advance(plan: &ReplyPlan, step: Step) -> Option<(Emit, Step)> {
    match step {
        Step::MessageStart => Some((Emit::MessageStart, block_entry(plan, 0, 0))),
        Step::Block { block, phase, sent } => block_step(plan, block, phase, sent),
        Step::MessageStop => Some((Emit::MessageStop, Step::Metadata)),
        Step::Metadata => Some((Emit::Metadata, Step::Done)),
        Step::Exception => Some((Emit::Exception, Step::Done)),
        Step::Done => None,
    }
}

/// Encodes one emitted event.
pub fn encode(plan: &ReplyPlan, emit: Emit, latency_ms: u64) -> Vec<u8> {
    match emit {
        Emit::MessageStart => message_start(),
        Emit::BlockStart { block } => match plan.blocks.get(block) {
            Some(ReplyBlock::ToolUse(call)) => content_block_start(block, call),
            _ => content_block_stop(block),
        },
        Emit::Delta { block, start, end } => {
            let Some(current) = plan.blocks.get(block) else {
                return content_block_stop(block);
            };
            let piece = streamed_text(current).get(start..end).unwrap_or("");
            let delta = match current {
                ReplyBlock::Reasoning { .. } => json!({"reasoningContent": {"text": piece}}),
                ReplyBlock::Text(_) => json!({"text": piece}),
                ReplyBlock::ToolUse(_) => json!({"toolUse": {"input": piece}}),
            };
            content_block_delta(block, delta)
        }
        Emit::Signature { block } => {
            let signature = match plan.blocks.get(block) {
                Some(ReplyBlock::Reasoning { signature, .. }) => signature.as_str(),
                _ => "",
            };
            content_block_delta(block, json!({"reasoningContent": {"signature": signature}}))
        }
        Emit::BlockStop { block } => content_block_stop(block),
        Emit::MessageStop => message_stop(&plan.stop_reason),
        Emit::Metadata => metadata(plan, latency_ms),
        Emit::Exception => match &plan.faults.stream_error {
            Some(error) => exception(error),
            None => content_block_stop(0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converse::{Usage, deltas};
    use crate::eventstream::decode_frame;
    use crate::faults::Faults;

    fn plan(text: &str, stream_error: Option<StreamError>) -> ReplyPlan {
        plan_with(vec![ReplyBlock::Text(text.to_string())], stream_error)
    }

    fn plan_with(blocks: Vec<ReplyBlock>, stream_error: Option<StreamError>) -> ReplyPlan {
        ReplyPlan {
            blocks,
            stop_reason: "end_turn".to_string(),
            usage: Usage {
                input_tokens: 1,
                output_tokens: 2,
                ..Usage::default()
            },
            faults: Faults {
                stream_error,
                ..Faults::default()
            },
            image_sha256: Vec::new(),
        }
    }

    fn all_frames(plan: &ReplyPlan) -> Vec<crate::eventstream::Frame> {
        let mut step = Step::MessageStart;
        let mut frames = Vec::new();
        while let Some((emit, next)) = advance(plan, step) {
            let bytes = encode(plan, emit, 7);
            frames.push(decode_frame(&bytes).unwrap().0);
            step = next;
        }
        frames
    }

    fn payload(frame: &crate::eventstream::Frame) -> Value {
        serde_json::from_slice(&frame.payload).unwrap()
    }

    #[test]
    fn full_sequence() {
        let plan = plan("Echo: hi", None);
        let frames = all_frames(&plan);
        let types: Vec<&str> = frames
            .iter()
            .map(|f| f.header_str(":event-type").unwrap())
            .collect();
        assert_eq!(
            types,
            vec![
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(payload(&frames[0])["role"], "assistant");
        assert_eq!(payload(&frames[1])["delta"]["text"], "Echo: ");
        assert_eq!(payload(&frames[2])["delta"]["text"], "hi");
        assert_eq!(payload(&frames[2])["contentBlockIndex"], 0);
        assert_eq!(payload(&frames[4])["stopReason"], "end_turn");
        assert_eq!(payload(&frames[5])["usage"]["totalTokens"], 3);
        assert_eq!(payload(&frames[5])["metrics"]["latencyMs"], 7);
        assert!(
            frames
                .iter()
                .all(|f| f.header_str(":message-type") == Some("event"))
        );
        assert!(frames.iter().all(|f| payload(f)["p"] == PADDING));
    }

    #[test]
    fn stream_error_after_n_deltas() {
        let plan = plan(
            "Echo: a b c",
            Some(StreamError {
                member: "throttlingException",
                after: 2,
            }),
        );
        let frames = all_frames(&plan);
        assert_eq!(frames.len(), 4);
        let last = &frames[3];
        assert_eq!(last.header_str(":message-type"), Some("exception"));
        assert_eq!(
            last.header_str(":exception-type"),
            Some("throttlingException")
        );
        assert_eq!(
            payload(last)["message"],
            "Too many requests, please wait before trying again."
        );
    }

    #[test]
    fn stream_error_after_more_deltas_than_words() {
        let plan = plan(
            "Echo: a",
            Some(StreamError {
                member: "modelStreamErrorException",
                after: 10,
            }),
        );
        let frames = all_frames(&plan);
        assert_eq!(frames.len(), 4);
        assert_eq!(payload(&frames[3])["originalStatusCode"], 500);
    }

    #[test]
    fn deltas_match_the_reply_helper() {
        let plan = plan("Echo: x  y z", None);
        let texts: Vec<String> = all_frames(&plan)
            .iter()
            .filter(|f| f.header_str(":event-type") == Some("contentBlockDelta"))
            .map(|f| payload(f)["delta"]["text"].as_str().unwrap().to_string())
            .collect();
        let text = plan.text();
        let expected: Vec<&str> = deltas(&text).collect();
        assert_eq!(texts, expected);
    }

    fn tool_call(index: usize, input: Value) -> ToolCall {
        ToolCall {
            tool_use_id: format!("tooluse_{index}_x"),
            name: format!("tool_{index}"),
            input_json: input.to_string(),
            input,
        }
    }

    #[test]
    fn every_block_kind_streams_with_its_own_index() {
        let plan = plan_with(
            vec![
                ReplyBlock::Reasoning {
                    text: "Thinking about: x".into(),
                    signature: "sig".into(),
                },
                ReplyBlock::Text("Echo: x".into()),
                ReplyBlock::ToolUse(tool_call(0, json!({"city": "city-value", "days": 1}))),
                ReplyBlock::ToolUse(tool_call(1, json!({}))),
            ],
            None,
        );
        let frames = all_frames(&plan);
        let events: Vec<(String, Value)> = frames
            .iter()
            .map(|f| (f.header_str(":event-type").unwrap().to_string(), payload(f)))
            .collect();
        let summary: Vec<String> = events
            .iter()
            .map(|(kind, body)| match body.get("contentBlockIndex") {
                Some(index) => format!("{kind}@{index}"),
                None => kind.clone(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "messageStart",
                "contentBlockDelta@0",
                "contentBlockDelta@0",
                "contentBlockDelta@0",
                "contentBlockDelta@0",
                "contentBlockStop@0",
                "contentBlockDelta@1",
                "contentBlockDelta@1",
                "contentBlockStop@1",
                "contentBlockStart@2",
                "contentBlockDelta@2",
                "contentBlockDelta@2",
                "contentBlockDelta@2",
                "contentBlockStop@2",
                "contentBlockStart@3",
                "contentBlockDelta@3",
                "contentBlockDelta@3",
                "contentBlockStop@3",
                "messageStop",
                "metadata",
            ]
        );
        let reasoning: String = events[1..4]
            .iter()
            .map(|(_, body)| body["delta"]["reasoningContent"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(reasoning, "Thinking about: x");
        assert_eq!(events[4].1["delta"]["reasoningContent"]["signature"], "sig");
        assert_eq!(
            events[9].1["start"]["toolUse"],
            json!({"toolUseId": "tooluse_0_x", "name": "tool_0"})
        );
        let input: String = events[10..13]
            .iter()
            .map(|(_, body)| body["delta"]["toolUse"]["input"].as_str().unwrap())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({"city": "city-value", "days": 1})
        );
        assert_eq!(events[15].1["delta"]["toolUse"]["input"], "{");
        assert_eq!(events[16].1["delta"]["toolUse"]["input"], "}");
    }

    #[test]
    fn stream_errors_count_deltas_across_blocks() {
        let plan = plan_with(
            vec![
                ReplyBlock::Text("Echo: a".into()),
                ReplyBlock::ToolUse(tool_call(0, json!({}))),
            ],
            Some(StreamError {
                member: "internalServerException",
                after: 3,
            }),
        );
        let kinds: Vec<String> = all_frames(&plan)
            .iter()
            .map(|f| {
                f.header_str(":event-type")
                    .or(f.header_str(":exception-type"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "contentBlockStart",
                "contentBlockDelta",
                "internalServerException"
            ]
        );
    }
}
