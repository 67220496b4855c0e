//! ConverseStream events, encoded as event-stream frames, and the order they are sent in.

use serde_json::{Value, json};

use crate::converse::{ReplyPlan, next_delta_end};
use crate::eventstream::encode_frame;
use crate::faults::StreamError;

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

pub fn content_block_delta(text: &str) -> Vec<u8> {
    event_frame(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": text}}),
    )
}

pub fn content_block_stop() -> Vec<u8> {
    event_frame("contentBlockStop", json!({"contentBlockIndex": 0}))
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

/// Position in the event sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MessageStart,
    Delta { position: usize, sent: usize },
    BlockStop,
    MessageStop,
    Metadata,
    Exception,
    Done,
}

/// What to send next: the frame to emit (built lazily by the caller) and the following step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    MessageStart,
    Delta { start: usize, end: usize },
    BlockStop,
    MessageStop,
    Metadata,
    Exception,
}

/// Advances the event sequence: messageStart, one delta per word, contentBlockStop,
/// messageStop, metadata; or, with a scripted stream error, messageStart, `after` deltas and
/// the exception.
pub fn advance(plan: &ReplyPlan, step: Step) -> Option<(Emit, Step)> {
    let stream_error = plan.faults.stream_error.as_ref();
    let first_delta = Step::Delta {
        position: 0,
        sent: 0,
    };
    match step {
        Step::MessageStart => Some((Emit::MessageStart, first_delta)),
        Step::Delta { position, sent } => {
            if let Some(error) = stream_error
                && sent >= error.after
            {
                return advance(plan, Step::Exception);
            }
            match next_delta_end(&plan.text, position) {
                Some(end) => Some((
                    Emit::Delta {
                        start: position,
                        end,
                    },
                    Step::Delta {
                        position: end,
                        sent: sent + 1,
                    },
                )),
                None if stream_error.is_some() => advance(plan, Step::Exception),
                None => advance(plan, Step::BlockStop),
            }
        }
        Step::BlockStop => Some((Emit::BlockStop, Step::MessageStop)),
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
        Emit::Delta { start, end } => content_block_delta(plan.text.get(start..end).unwrap_or("")),
        Emit::BlockStop => content_block_stop(),
        Emit::MessageStop => message_stop(&plan.stop_reason),
        Emit::Metadata => metadata(plan, latency_ms),
        Emit::Exception => match &plan.faults.stream_error {
            Some(error) => exception(error),
            None => content_block_stop(),
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
        ReplyPlan {
            text: text.to_string(),
            stop_reason: "end_turn".to_string(),
            usage: Usage {
                input_tokens: 1,
                output_tokens: 2,
            },
            faults: Faults {
                stream_error,
                ..Faults::default()
            },
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
        let expected: Vec<&str> = deltas(&plan.text).collect();
        assert_eq!(texts, expected);
    }
}
