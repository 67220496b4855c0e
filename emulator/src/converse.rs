//! Converse request validation and deterministic reply generation.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::faults::{self, Faults};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub system: Option<Vec<Value>>,
    #[serde(default)]
    pub inference_config: Option<InferenceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    pub fn to_json(self) -> Value {
        json!({
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.total_tokens(),
        })
    }
}

/// Everything needed to answer a Converse or ConverseStream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPlan {
    pub text: String,
    pub stop_reason: String,
    pub usage: Usage,
    pub faults: Faults,
}

pub fn parse_request(body: &[u8]) -> Result<ConverseRequest, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let malformed =
        |error: serde_json::Error| Error::validation(format!("Malformed input request: {error}"));
    let document: Value = serde_json::from_slice(body).map_err(malformed)?;
    if !document.is_object() {
        return Err(Error::validation(
            "Malformed input request: expected a JSON object.",
        ));
    }
    serde_json::from_value(document).map_err(malformed)
}

fn text_blocks(content: &[Value]) -> impl Iterator<Item = &str> {
    content
        .iter()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
}

fn validate(request: &ConverseRequest) -> Result<&[Message], Error> {
    let messages = request.messages.as_deref().unwrap_or_default();
    let starts_with_user = messages.first().is_some_and(|first| first.role == "user");
    for (index, message) in messages.iter().enumerate() {
        if message.role != "user" && message.role != "assistant" {
            return Err(Error::validation(format!(
                "1 validation error detected: Value '{}' at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                message.role,
                index + 1
            )));
        }
    }
    if !starts_with_user {
        return Err(Error::validation(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        ));
    }
    if messages.windows(2).any(|pair| pair[0].role == pair[1].role) {
        return Err(Error::validation(
            "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
        ));
    }
    for (index, message) in messages.iter().enumerate() {
        let content = message.content.as_deref().unwrap_or_default();
        if content.is_empty() {
            return Err(Error::validation(format!(
                "The content field in the Message object at messages.{index} is empty. Add a ContentBlock object to the content field and try again."
            )));
        }
        for (block_index, block) in content.iter().enumerate() {
            if let Some(text) = block.get("text")
                && text.as_str().is_none_or(|text| text.trim().is_empty())
            {
                return Err(Error::validation(format!(
                    "The text field in the ContentBlock object at messages.{index}.content.{block_index} is blank. Add text to the text field, and try again."
                )));
            }
        }
    }
    if let Some(config) = &request.inference_config {
        if let Some(max_tokens) = config.max_tokens
            && max_tokens < 1
        {
            return Err(constraint(
                &max_tokens.to_string(),
                "inferenceConfig.maxTokens",
                "Member must have value greater than or equal to 1",
            ));
        }
        for (name, value) in [
            ("inferenceConfig.temperature", config.temperature),
            ("inferenceConfig.topP", config.top_p),
        ] {
            if let Some(value) = value {
                if value < 0.0 {
                    return Err(constraint(
                        &value.to_string(),
                        name,
                        "Member must have value greater than or equal to 0",
                    ));
                }
                if value > 1.0 {
                    return Err(constraint(
                        &value.to_string(),
                        name,
                        "Member must have value less than or equal to 1",
                    ));
                }
            }
        }
        if config
            .stop_sequences
            .as_ref()
            .is_some_and(|sequences| sequences.len() > 2500)
        {
            return Err(constraint(
                "[...]",
                "inferenceConfig.stopSequences",
                "Member must have length less than or equal to 2500",
            ));
        }
    }
    Ok(messages)
}

fn constraint(value: &str, path: &str, rule: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {rule}"
    ))
}

/// Counts whitespace-separated words.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The prefix of `text` ending with its `words`-th word (no trailing whitespace).
pub fn first_words(text: &str, words: usize) -> &str {
    if words == 0 {
        return "";
    }
    let mut seen = 0;
    let mut in_word = false;
    for (index, ch) in text.char_indices() {
        if ch.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == words {
                    return &text[..index];
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    text
}

/// End of the stream delta starting at `start`: leading whitespace, one word, then the
/// whitespace that follows it. Concatenating all deltas gives back `text`.
pub fn next_delta_end(text: &str, start: usize) -> Option<usize> {
    let rest = text.get(start..)?;
    if rest.is_empty() {
        return None;
    }
    let mut seen_word = false;
    let mut after_word = false;
    for (offset, ch) in rest.char_indices() {
        let space = ch.is_whitespace();
        if !space && after_word {
            return Some(start + offset);
        }
        if !space {
            seen_word = true;
        } else if seen_word {
            after_word = true;
        }
    }
    Some(text.len())
}

/// Iterates the stream deltas of `text`.
pub fn deltas(text: &str) -> impl Iterator<Item = &str> {
    let mut position = 0;
    std::iter::from_fn(move || {
        let end = next_delta_end(text, position)?;
        let delta = &text[position..end];
        position = end;
        Some(delta)
    })
}

fn generated_words(count: usize) -> String {
    let mut text = String::from("Echo:");
    for index in 1..=count {
        text.push_str(" w");
        text.push_str(&index.to_string());
    }
    text
}

/// Validates the request and computes the reply, its stop reason, usage and scripted faults.
pub fn plan_reply(request: &ConverseRequest) -> Result<ReplyPlan, Error> {
    let messages = validate(request)?;
    let last_user_text = messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| {
            text_blocks(message.content.as_deref().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let (prompt, faults) = faults::extract(&last_user_text)?;

    let full_reply = match faults.words {
        Some(count) => generated_words(count),
        None => format!("Echo: {}", prompt.trim()).trim_end().to_string(),
    };

    let config = request.inference_config.clone().unwrap_or_default();
    let stop_cut = config
        .stop_sequences
        .iter()
        .flatten()
        .filter(|sequence| !sequence.is_empty())
        .filter_map(|sequence| full_reply.find(sequence.as_str()))
        .min();
    let mut text = match stop_cut {
        Some(cut) => full_reply[..cut].to_string(),
        None => full_reply,
    };
    let limit = config
        .max_tokens
        .and_then(|max| usize::try_from(max).ok())
        .unwrap_or(usize::MAX);
    let mut stop_reason = if word_count(&text) > limit {
        text = first_words(&text, limit).to_string();
        "max_tokens"
    } else if stop_cut.is_some() {
        "stop_sequence"
    } else {
        "end_turn"
    }
    .to_string();
    if let Some(forced) = &faults.stop_reason {
        stop_reason.clone_from(forced);
    }

    let system_words: usize = request
        .system
        .as_deref()
        .map(|blocks| text_blocks(blocks).map(word_count).sum())
        .unwrap_or(0);
    let message_words: usize = messages
        .iter()
        .map(|message| {
            text_blocks(message.content.as_deref().unwrap_or_default())
                .map(word_count)
                .sum::<usize>()
        })
        .sum();
    let usage = Usage {
        input_tokens: (system_words + message_words).max(1) as u64,
        output_tokens: word_count(&text) as u64,
    };
    Ok(ReplyPlan {
        text,
        stop_reason,
        usage,
        faults,
    })
}

/// The Converse response document.
pub fn response_body(plan: &ReplyPlan, latency_ms: u64) -> Value {
    json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": [{ "text": plan.text }],
            }
        },
        "stopReason": plan.stop_reason,
        "usage": plan.usage.to_json(),
        "metrics": { "latencyMs": latency_ms },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::time::Duration;

    fn request(body: Value) -> ConverseRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    fn plan(body: Value) -> ReplyPlan {
        plan_reply(&request(body)).unwrap()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    fn validation_message(body: Value) -> String {
        let error = plan_reply(&request(body)).unwrap_err();
        let (kind, message) = error.as_service();
        assert_eq!(kind, ErrorKind::Validation);
        message
    }

    #[test]
    fn echoes_the_last_user_message() {
        let reply = plan(json!({
            "system": [{"text": "Be brief."}],
            "messages": [
                user("first question"),
                {"role": "assistant", "content": [{"text": "an answer"}]},
                {"role": "user", "content": [{"text": "  Hello"}, {"image": {}}, {"text": "world  "}]},
            ]
        }));
        assert_eq!(reply.text, "Echo: Hello world");
        assert_eq!(reply.stop_reason, "end_turn");
        // 2 system + 2 + 2 + 2 message words.
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 8,
                output_tokens: 3
            }
        );
        assert_eq!(reply.usage.total_tokens(), 11);
    }

    #[test]
    fn directives_are_stripped_and_counted_as_input() {
        let reply = plan(json!({"messages": [user("hi [[emu:delay-first=5]] there")]}));
        assert_eq!(reply.text, "Echo: hi  there");
        assert_eq!(reply.faults.delay_first, Duration::from_millis(5));
        assert_eq!(reply.usage.input_tokens, 3);
        assert_eq!(reply.usage.output_tokens, 3);
    }

    #[test]
    fn directive_only_prompt_echoes_nothing() {
        let reply = plan(json!({"messages": [user("[[emu:stop=content_filtered]]")]}));
        assert_eq!(reply.text, "Echo:");
        assert_eq!(reply.stop_reason, "content_filtered");
        assert_eq!(reply.usage.output_tokens, 1);
    }

    #[test]
    fn generates_words_for_benchmarks() {
        let reply = plan(json!({"messages": [user("[[emu:words=4]] ignored")]}));
        assert_eq!(reply.text, "Echo: w1 w2 w3 w4");
        assert_eq!(reply.usage.output_tokens, 5);
    }

    #[test]
    fn max_tokens_truncates() {
        let reply = plan(json!({
            "messages": [user("one two three four")],
            "inferenceConfig": {"maxTokens": 3}
        }));
        assert_eq!(reply.text, "Echo: one two");
        assert_eq!(reply.stop_reason, "max_tokens");
        assert_eq!(reply.usage.output_tokens, 3);

        let exact = plan(json!({
            "messages": [user("one two")],
            "inferenceConfig": {"maxTokens": 3}
        }));
        assert_eq!(exact.stop_reason, "end_turn");
    }

    #[test]
    fn stop_sequences_cut_before_the_match() {
        let reply = plan(json!({
            "messages": [user("alpha beta STOP gamma END")],
            "inferenceConfig": {"stopSequences": ["END", "STOP", ""]}
        }));
        assert_eq!(reply.text, "Echo: alpha beta ");
        assert_eq!(reply.stop_reason, "stop_sequence");
        assert_eq!(reply.usage.output_tokens, 3);

        let truncated_first = plan(json!({
            "messages": [user("alpha beta STOP")],
            "inferenceConfig": {"stopSequences": ["STOP"], "maxTokens": 2}
        }));
        assert_eq!(truncated_first.text, "Echo: alpha");
        assert_eq!(truncated_first.stop_reason, "max_tokens");
    }

    #[test]
    fn deltas_concatenate_to_the_reply() {
        let text = "Echo: hi  there\tfriend ";
        let parts: Vec<&str> = deltas(text).collect();
        assert_eq!(parts, vec!["Echo: ", "hi  ", "there\t", "friend "]);
        assert_eq!(parts.concat(), text);
        assert_eq!(deltas("").count(), 0);
        assert_eq!(deltas(" lead").collect::<Vec<_>>(), vec![" lead"]);
        assert_eq!(
            deltas("héllo wörld").collect::<Vec<_>>(),
            vec!["héllo ", "wörld"]
        );
    }

    #[test]
    fn first_words_keeps_inner_spacing() {
        assert_eq!(first_words("a  b c", 2), "a  b");
        assert_eq!(first_words("a b", 5), "a b");
        assert_eq!(first_words("a b", 0), "");
    }

    #[test]
    fn validates_like_bedrock() {
        assert!(
            validation_message(json!({"messages": []}))
                .starts_with("A conversation must start with a user message")
        );
        assert!(
            validation_message(json!({}))
                .starts_with("A conversation must start with a user message")
        );
        assert!(
            validation_message(
                json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]})
            )
            .starts_with("A conversation must start with a user message")
        );
        assert!(
            validation_message(json!({"messages": [user("a"), user("b")]}))
                .starts_with("A conversation must alternate")
        );
        assert!(
            validation_message(json!({"messages": [{"role": "system", "content": []}]}))
                .contains("messages.1.member.role")
        );
        assert!(
            validation_message(json!({"messages": [{"role": "user", "content": []}]}))
                .contains("messages.0 is empty")
        );
        assert!(validation_message(json!({"messages": [user("  ")]})).contains("is blank"));
        assert!(
            validation_message(json!({"messages": [user("x")], "inferenceConfig": {"maxTokens": 0}}))
                .contains("'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")
        );
        assert!(
            validation_message(
                json!({"messages": [user("x")], "inferenceConfig": {"temperature": 1.5}})
            )
            .contains("inferenceConfig.temperature")
        );
        assert!(
            validation_message(json!({"messages": [user("[[emu:nope=1]]")]})).contains("'nope'")
        );
    }

    #[test]
    fn malformed_json_is_a_validation_error() {
        for body in [&b"{"[..], b"[]", b"{\"messages\": 3}", b"\xff\xfe", b"null"] {
            let error = parse_request(body).unwrap_err();
            assert_eq!(error.as_service().0, ErrorKind::Validation);
        }
        assert!(parse_request(b"").is_ok());
    }

    #[test]
    fn response_body_has_the_sdk_shape() {
        let reply = plan(json!({"messages": [user("hi")]}));
        let body = response_body(&reply, 12);
        assert_eq!(body["output"]["message"]["content"][0]["text"], "Echo: hi");
        assert_eq!(body["usage"]["totalTokens"], 3);
        assert_eq!(body["metrics"]["latencyMs"], 12);
    }
}
