//! Scripted faults: `[[emu:key=value ...]]` directives embedded in prompt text.
//!
//! A directive block holds one or more `key=value` pairs separated by spaces, commas or
//! semicolons; several blocks may appear anywhere in the text. Blocks are removed from the text
//! before the reply is generated.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

const OPEN: &str = "[[emu:";
const CLOSE: &str = "]]";
const MAX_DELAY_MS: u64 = 600_000;
pub const MAX_WORDS: usize = 100_000;
/// Bedrock accepts at most this many tools in one `toolConfig`.
const MAX_TOOL_CALLS: u64 = 1_000;

/// Exceptions that may appear inside a ConverseStream event stream, by union member name.
pub const STREAM_ERROR_MEMBERS: [&str; 5] = [
    "throttlingException",
    "modelStreamErrorException",
    "validationException",
    "internalServerException",
    "serviceUnavailableException",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// Union member name, e.g. `throttlingException`.
    pub member: &'static str,
    /// Number of text deltas sent before the exception.
    pub after: usize,
}

impl StreamError {
    pub fn kind(&self) -> ErrorKind {
        match self.member {
            "throttlingException" => ErrorKind::Throttling,
            "modelStreamErrorException" => ErrorKind::ModelStreamError,
            "validationException" => ErrorKind::Validation,
            "serviceUnavailableException" => ErrorKind::ServiceUnavailable,
            _ => ErrorKind::InternalServer,
        }
    }
}

/// Where a scripted connection reset happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPoint {
    /// Before any byte of the answer, the status line included.
    BeforeResponse,
    /// ConverseStream: after `messageStart` and this many deltas. Converse,
    /// which answers in one piece, resets before the answer.
    AfterDeltas(usize),
}

impl ResetPoint {
    /// Whether a stream that has sent `events` events, `deltas` of them
    /// deltas, resets now instead of sending the next one.
    pub fn is_due(self, events: usize, deltas: usize) -> bool {
        match self {
            ResetPoint::BeforeResponse => true,
            ResetPoint::AfterDeltas(after) => events > 0 && deltas >= after,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer this exception instead of a reply.
    pub error: Option<ErrorKind>,
    /// End the event stream with this exception.
    pub stream_error: Option<StreamError>,
    /// Wait before the first byte (unary) or the first event (streaming).
    pub delay_first: Duration,
    /// Wait between consecutive stream events.
    pub delay_between: Duration,
    /// Reply with this many generated words instead of echoing.
    pub words: Option<usize>,
    /// Force this stop reason.
    pub stop_reason: Option<String>,
    /// Call the first `n` tools of the request's `toolConfig` (parallel tool calls).
    pub tool_calls: Option<usize>,
    /// Let the request's guardrail intervene.
    pub guardrail_intervenes: bool,
    /// Drop the connection with a TCP reset (RST) at this point.
    pub reset: Option<ResetPoint>,
}

/// Removes every directive block from `text` and returns the remaining text and the faults.
pub fn extract(text: &str) -> Result<(String, Faults), Error> {
    let mut remaining = String::with_capacity(text.len());
    let mut faults = Faults::default();
    let mut after: Option<usize> = None;
    let mut stream_member: Option<&'static str> = None;
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        remaining.push_str(&rest[..start]);
        let body_start = start + OPEN.len();
        let Some(length) = rest[body_start..].find(CLOSE) else {
            return Err(Error::validation(format!(
                "Unterminated emulator directive: {}",
                &rest[start..]
            )));
        };
        let body = &rest[body_start..body_start + length];
        for pair in body
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|pair| !pair.is_empty())
        {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::validation(format!(
                    "Emulator directive '{pair}' must have the form key=value."
                )));
            };
            match key {
                "error" => faults.error = Some(parse_error_name(value)?),
                "stream-error" => stream_member = Some(parse_stream_member(value)?),
                "after" => after = Some(parse_number(key, value, MAX_WORDS as u64)? as usize),
                "delay-first" => faults.delay_first = parse_delay(key, value)?,
                "delay-between" => faults.delay_between = parse_delay(key, value)?,
                "words" => {
                    faults.words = Some(parse_number(key, value, MAX_WORDS as u64)? as usize)
                }
                "stop" => faults.stop_reason = Some(parse_stop_reason(value)?),
                "tool-calls" => {
                    faults.tool_calls = Some(parse_number(key, value, MAX_TOOL_CALLS)? as usize)
                }
                "guardrail" => faults.guardrail_intervenes = parse_guardrail_action(value)?,
                "reset" => faults.reset = Some(parse_reset_point(value)?),
                unknown => {
                    return Err(Error::validation(format!(
                        "Unknown emulator directive '{unknown}'. Supported directives: error, stream-error, after, delay-first, delay-between, words, stop, tool-calls, guardrail, reset."
                    )));
                }
            }
        }
        rest = &rest[body_start + length + CLOSE.len()..];
    }
    remaining.push_str(rest);
    faults.stream_error = stream_member.map(|member| StreamError {
        member,
        after: after.unwrap_or(0),
    });
    Ok((remaining, faults))
}

fn parse_error_name(value: &str) -> Result<ErrorKind, Error> {
    ErrorKind::from_name(value).ok_or_else(|| {
        Error::validation(format!(
            "Unknown exception '{value}' in emulator directive 'error'."
        ))
    })
}

fn parse_stream_member(value: &str) -> Result<&'static str, Error> {
    let mut chars = value.chars();
    let lowered: String = match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    };
    STREAM_ERROR_MEMBERS
        .into_iter()
        .find(|member| *member == lowered)
        .ok_or_else(|| {
            Error::validation(format!(
                "Unknown stream exception '{value}' in emulator directive 'stream-error'. Expected one of: {}.",
                STREAM_ERROR_MEMBERS.join(", ")
            ))
        })
}

fn parse_number(key: &str, value: &str, max: u64) -> Result<u64, Error> {
    match value.parse::<u64>() {
        Ok(number) if number <= max => Ok(number),
        _ => Err(Error::validation(format!(
            "Emulator directive '{key}' needs a whole number between 0 and {max}, got '{value}'."
        ))),
    }
}

fn parse_delay(key: &str, value: &str) -> Result<Duration, Error> {
    parse_number(key, value, MAX_DELAY_MS).map(Duration::from_millis)
}

fn parse_stop_reason(value: &str) -> Result<String, Error> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(value.to_string())
    } else {
        Err(Error::validation(format!(
            "Emulator directive 'stop' needs a stop reason such as end_turn or guardrail_intervened, got '{value}'."
        )))
    }
}

fn parse_reset_point(value: &str) -> Result<ResetPoint, Error> {
    if value == "before" {
        return Ok(ResetPoint::BeforeResponse);
    }
    match value.parse::<u64>() {
        Ok(deltas) if deltas <= MAX_WORDS as u64 => Ok(ResetPoint::AfterDeltas(deltas as usize)),
        _ => Err(Error::validation(format!(
            "Emulator directive 'reset' needs 'before' or a number of deltas between 0 and {MAX_WORDS}, got '{value}'."
        ))),
    }
}

fn parse_guardrail_action(value: &str) -> Result<bool, Error> {
    match value {
        "intervene" => Ok(true),
        "pass" => Ok(false),
        _ => Err(Error::validation(format!(
            "Emulator directive 'guardrail' needs 'intervene' or 'pass', got '{value}'."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_directives_is_untouched() {
        let (text, faults) = extract("hello [world]").unwrap();
        assert_eq!(text, "hello [world]");
        assert_eq!(faults, Faults::default());
    }

    #[test]
    fn parses_every_directive() {
        let (text, faults) = extract(
            "Hi [[emu:error=ThrottlingException]] there [[emu:stream-error=modelStreamErrorException after=2]][[emu:delay-first=15,delay-between=5;words=3 stop=guardrail_intervened]]",
        )
        .unwrap();
        assert_eq!(text, "Hi  there ");
        assert_eq!(faults.error, Some(ErrorKind::Throttling));
        assert_eq!(
            faults.stream_error,
            Some(StreamError {
                member: "modelStreamErrorException",
                after: 2
            })
        );
        assert_eq!(faults.delay_first, Duration::from_millis(15));
        assert_eq!(faults.delay_between, Duration::from_millis(5));
        assert_eq!(faults.words, Some(3));
        assert_eq!(faults.stop_reason.as_deref(), Some("guardrail_intervened"));
    }

    #[test]
    fn parses_tool_and_guardrail_directives() {
        let (text, faults) = extract("call [[emu:tool-calls=2 guardrail=intervene]]").unwrap();
        assert_eq!(text, "call ");
        assert_eq!(faults.tool_calls, Some(2));
        assert!(faults.guardrail_intervenes);
        let (_, faults) = extract("[[emu:guardrail=pass]]").unwrap();
        assert!(!faults.guardrail_intervenes);
        assert_eq!(faults.tool_calls, None);
    }

    #[test]
    fn parses_reset_points() {
        let (text, faults) = extract("cut [[emu:reset=before]]").unwrap();
        assert_eq!(text, "cut ");
        assert_eq!(faults.reset, Some(ResetPoint::BeforeResponse));
        let (_, faults) = extract("[[emu:reset=3 words=10]]").unwrap();
        assert_eq!(faults.reset, Some(ResetPoint::AfterDeltas(3)));
        assert_eq!(faults.words, Some(10));
        assert_eq!(extract("plain").unwrap().1.reset, None);
    }

    #[test]
    fn reset_points_fall_due_where_they_say() {
        assert!(ResetPoint::BeforeResponse.is_due(0, 0));
        let after_two = ResetPoint::AfterDeltas(2);
        assert!(!after_two.is_due(0, 0), "messageStart always goes first");
        assert!(!after_two.is_due(1, 0));
        assert!(!after_two.is_due(2, 1));
        assert!(after_two.is_due(3, 2));
        assert!(after_two.is_due(9, 5));
        let at_once = ResetPoint::AfterDeltas(0);
        assert!(!at_once.is_due(0, 0));
        assert!(at_once.is_due(1, 0));
    }

    #[test]
    fn stream_error_accepts_shape_names_and_defaults_after_to_zero() {
        let (_, faults) = extract("[[emu:stream-error=ThrottlingException]]").unwrap();
        let stream_error = faults.stream_error.unwrap();
        assert_eq!(stream_error.member, "throttlingException");
        assert_eq!(stream_error.after, 0);
        assert_eq!(stream_error.kind(), ErrorKind::Throttling);
    }

    fn message_of(text: &str) -> String {
        let error = extract(text).unwrap_err();
        let (kind, message) = error.as_service();
        assert_eq!(kind, ErrorKind::Validation);
        message
    }

    #[test]
    fn rejects_bad_directives() {
        assert!(message_of("[[emu:colour=blue]]").contains("'colour'"));
        assert!(message_of("[[emu:error=NopeException]]").contains("NopeException"));
        assert!(message_of("[[emu:stream-error=boom]]").contains("boom"));
        assert!(message_of("[[emu:words=-1]]").contains("words"));
        assert!(message_of("[[emu:words=100001]]").contains("words"));
        assert!(message_of("[[emu:delay-first=soon]]").contains("delay-first"));
        assert!(message_of("[[emu:stop=End Turn]]").contains("'End'"));
        assert!(message_of("[[emu:flag]]").contains("key=value"));
        assert!(message_of("[[emu:tool-calls=many]]").contains("tool-calls"));
        assert!(message_of("[[emu:guardrail=maybe]]").contains("'maybe'"));
        assert!(message_of("[[emu:reset=later]]").contains("'later'"));
        assert!(message_of("[[emu:reset=100001]]").contains("reset"));
        assert!(message_of("oops [[emu:error=ThrottlingException").contains("Unterminated"));
    }
}
