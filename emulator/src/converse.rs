//! Converse request validation and deterministic reply generation.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::faults::{self, Faults};
use crate::guardrails::{self, GuardrailConfig};
use crate::media::{self, Attachment, BlockPosition};
use crate::prompt_cache::{self, CacheOutcome, PromptCache};
use crate::reasoning::{self, Reasoning, Sampling};
use crate::request_metadata;
use crate::tools::{self, ToolCall, ToolConfig};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub system: Option<Vec<Value>>,
    #[serde(default)]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default)]
    pub tool_config: Option<Value>,
    #[serde(default)]
    pub additional_model_request_fields: Option<Value>,
    #[serde(default)]
    pub guardrail_config: Option<GuardrailConfig>,
    #[serde(default)]
    pub request_metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Vec<Value>>,
}

impl Message {
    fn blocks(&self) -> &[Value] {
        self.content.as_deref().unwrap_or_default()
    }
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Set (with `cache_write_input_tokens`) when the prompt holds a cache point.
    pub cache_read_input_tokens: Option<u64>,
    pub cache_write_input_tokens: Option<u64>,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens.unwrap_or(0)
            + self.cache_write_input_tokens.unwrap_or(0)
    }

    pub fn to_json(self) -> Value {
        let mut usage = json!({
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.total_tokens(),
        });
        if let Some(read) = self.cache_read_input_tokens {
            usage["cacheReadInputTokens"] = json!(read);
        }
        if let Some(write) = self.cache_write_input_tokens {
            usage["cacheWriteInputTokens"] = json!(write);
        }
        usage
    }
}

/// One content block of the reply, in reply order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBlock {
    Reasoning { text: String, signature: String },
    Text(String),
    ToolUse(ToolCall),
}

impl ReplyBlock {
    /// The block as the Converse response's `output.message.content` holds it.
    pub fn to_json(&self) -> Value {
        match self {
            ReplyBlock::Reasoning { text, signature } => json!({
                "reasoningContent": {"reasoningText": {"text": text, "signature": signature}}
            }),
            ReplyBlock::Text(text) => json!({ "text": text }),
            ReplyBlock::ToolUse(call) => json!({
                "toolUse": {"toolUseId": call.tool_use_id, "name": call.name, "input": call.input}
            }),
        }
    }

    fn output_words(&self) -> usize {
        match self {
            ReplyBlock::Reasoning { text, .. } | ReplyBlock::Text(text) => word_count(text),
            ReplyBlock::ToolUse(call) => word_count(&call.input_json),
        }
    }
}

/// Everything needed to answer a Converse or ConverseStream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPlan {
    pub blocks: Vec<ReplyBlock>,
    pub stop_reason: String,
    pub usage: Usage,
    pub faults: Faults,
    /// Hex SHA-256 of every image in the request, in order.
    pub image_sha256: Vec<String>,
}

impl ReplyPlan {
    /// The text blocks of the reply, concatenated.
    pub fn text(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|block| match block {
                ReplyBlock::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// What the reply depends on besides the request body.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// The foundation model the model identifier resolved to.
    pub model_id: &'a str,
    /// The prefixes this emulator has cached so far.
    pub prompt_cache: &'a PromptCache,
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

fn validate_conversation(request: &ConverseRequest) -> Result<&[Message], Error> {
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
    Ok(messages)
}

fn validate_inference_config(config: &InferenceConfig) -> Result<(), Error> {
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
    Ok(())
}

fn validate_system(system: &[Value]) -> Result<(), Error> {
    for (index, block) in system.iter().enumerate() {
        if let Some(cache_point) = block.get("cachePoint") {
            prompt_cache::check_cache_point(cache_point, &format!("system.{}.member", index + 1))?;
        }
    }
    Ok(())
}

/// Checks every content block and returns the images and documents, each with the index of
/// the message holding it.
fn validate_blocks(
    messages: &[Message],
    has_tool_config: bool,
) -> Result<Vec<(usize, Attachment)>, Error> {
    let mut attachments = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let content = message.blocks();
        if content.is_empty() {
            return Err(Error::validation(format!(
                "The content field in the Message object at messages.{index} is empty. Add a ContentBlock object to the content field and try again."
            )));
        }
        for (block_index, block) in content.iter().enumerate() {
            let position = BlockPosition {
                message: index,
                block: block_index,
            };
            if let Some(text) = block.get("text")
                && text.as_str().is_none_or(|text| text.trim().is_empty())
            {
                return Err(Error::validation(format!(
                    "The text field in the ContentBlock object at messages.{index}.content.{block_index} is blank. Add text to the text field, and try again."
                )));
            }
            if let Some(image) = block.get("image") {
                attachments.push((index, media::check_image(image, position)?));
            }
            if let Some(document) = block.get("document") {
                attachments.push((index, media::check_document(document, position)?));
            }
            if let Some(cache_point) = block.get("cachePoint") {
                prompt_cache::check_cache_point(
                    cache_point,
                    &format!(
                        "messages.{}.member.content.{}.member",
                        index + 1,
                        block_index + 1
                    ),
                )?;
            }
        }
        let previous = index
            .checked_sub(1)
            .and_then(|previous| messages.get(previous))
            .map(Message::blocks);
        tools::check_message_blocks(index, content, previous, has_tool_config)?;
    }
    let found: Vec<Attachment> = attachments
        .iter()
        .map(|(_, attachment)| attachment.clone())
        .collect();
    media::check_counts(&found)?;
    Ok(attachments)
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

fn echo(subject: &str) -> String {
    format!("Echo: {subject}").trim_end().to_string()
}

/// Applies stop sequences, then `maxTokens`, to `full_reply`: the text kept and the stop
/// reason that ends it.
fn cut_reply(full_reply: String, config: &InferenceConfig) -> (String, &'static str) {
    let stop_cut = config
        .stop_sequences
        .iter()
        .flatten()
        .filter(|sequence| !sequence.is_empty())
        .filter_map(|sequence| full_reply.find(sequence.as_str()))
        .min();
    let text = match stop_cut {
        Some(cut) => full_reply[..cut].to_string(),
        None => full_reply,
    };
    let limit = config
        .max_tokens
        .and_then(|max| usize::try_from(max).ok())
        .unwrap_or(usize::MAX);
    if word_count(&text) > limit {
        (first_words(&text, limit).to_string(), "max_tokens")
    } else if stop_cut.is_some() {
        (text, "stop_sequence")
    } else {
        (text, "end_turn")
    }
}

/// Words of all system and message text blocks, as sent.
fn prompt_words(system: &[Value], messages: &[Message]) -> usize {
    let system_words: usize = text_blocks(system).map(word_count).sum();
    let message_words: usize = messages
        .iter()
        .map(|message| text_blocks(message.blocks()).map(word_count).sum::<usize>())
        .sum();
    system_words + message_words
}

/// The validated parts of a request that shape its reply.
struct Checked<'a> {
    messages: &'a [Message],
    system: &'a [Value],
    config: InferenceConfig,
    tool_config: Option<ToolConfig>,
    reasoning: Option<Reasoning>,
    attachments: Vec<(usize, Attachment)>,
}

fn check_request<'a>(request: &'a ConverseRequest, model_id: &str) -> Result<Checked<'a>, Error> {
    let messages = validate_conversation(request)?;
    let system = request.system.as_deref().unwrap_or_default();
    validate_system(system)?;
    let tool_config = request
        .tool_config
        .as_ref()
        .filter(|config| !config.is_null())
        .map(tools::parse_config)
        .transpose()?;
    let attachments = validate_blocks(messages, tool_config.is_some())?;
    let config = request.inference_config.clone().unwrap_or_default();
    validate_inference_config(&config)?;
    let sampling = Sampling {
        max_tokens: config.max_tokens,
        temperature: config.temperature,
        top_p: config.top_p,
    };
    let reasoning = reasoning::requested(
        request.additional_model_request_fields.as_ref(),
        model_id,
        sampling,
    )?;
    if reasoning
        .as_ref()
        .is_some_and(Reasoning::forbids_forced_tool_choice)
        && tool_config
            .as_ref()
            .is_some_and(|tools| tools.choice.is_forced())
    {
        return Err(Error::validation(
            "The model returned the following errors: Thinking may not be enabled when tool_choice forces tool use.",
        ));
    }
    if reasoning
        .as_ref()
        .is_some_and(Reasoning::forbids_forced_tool_choice)
    {
        reasoning::check_tool_loop_keeps_thinking(messages)?;
    }
    if let Some(guardrail) = &request.guardrail_config {
        guardrails::validate(guardrail)?;
    }
    if let Some(metadata) = &request.request_metadata {
        request_metadata::validate(metadata)?;
    }
    Ok(Checked {
        messages,
        system,
        config,
        tool_config,
        reasoning,
        attachments,
    })
}

/// The reply blocks and stop reason for a request the guardrail lets through.
fn model_reply(
    checked: &Checked<'_>,
    last_user: Option<(usize, &Message)>,
    prompt: &str,
    faults: &Faults,
) -> Result<(Vec<ReplyBlock>, String), Error> {
    let last_user_blocks = last_user.map_or(&[][..], |(_, message)| message.blocks());
    let tool_results = tools::result_text(last_user_blocks);
    let subject = tool_results
        .clone()
        .unwrap_or_else(|| prompt.trim().to_string());
    let full_reply = match (faults.words, &tool_results) {
        (Some(count), _) => generated_words(count),
        (None, Some(results)) => echo(results),
        (None, None) => {
            let mut reply = echo(&subject);
            for (_, attachment) in checked
                .attachments
                .iter()
                .filter(|(index, _)| Some(*index) == last_user.map(|(index, _)| index))
            {
                reply.push_str(&attachment.annotation());
            }
            reply
        }
    };
    let (text, text_stop) = cut_reply(full_reply, &checked.config);

    let calls = match &checked.tool_config {
        Some(config) if tool_results.is_none() && text_stop == "end_turn" => {
            let seed = format!("{}\n{prompt}", checked.messages.len());
            tools::planned_calls(config, faults.tool_calls, &seed)?
        }
        _ => Vec::new(),
    };
    let forced = checked
        .tool_config
        .as_ref()
        .is_some_and(|config| config.choice.is_forced());

    let mut blocks = Vec::new();
    if checked.reasoning.is_some() {
        let text = reasoning::reasoning_text(&subject);
        blocks.push(ReplyBlock::Reasoning {
            signature: reasoning::signature(&text),
            text,
        });
    }
    if calls.is_empty() || !forced {
        blocks.push(ReplyBlock::Text(text));
    }
    let stop_reason = if calls.is_empty() {
        text_stop
    } else {
        "tool_use"
    };
    blocks.extend(calls.into_iter().map(ReplyBlock::ToolUse));
    Ok((blocks, stop_reason.to_string()))
}

/// Validates the request and computes the reply, its stop reason, usage and scripted faults.
pub fn plan_reply(
    request: &ConverseRequest,
    invocation: &Invocation<'_>,
) -> Result<ReplyPlan, Error> {
    let checked = check_request(request, invocation.model_id)?;
    let last_user = checked
        .messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, message)| message.role == "user");
    let last_user_text = last_user
        .map(|(_, message)| text_blocks(message.blocks()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let (prompt, faults) = faults::extract(&last_user_text)?;
    if faults.tool_calls.is_some() && checked.tool_config.is_none() {
        return Err(Error::validation(
            "Emulator directive 'tool-calls' needs a request with a toolConfig.",
        ));
    }

    let intervened = request.guardrail_config.is_some() && faults.guardrail_intervenes;
    let (blocks, mut stop_reason) = if intervened {
        (
            vec![ReplyBlock::Text(guardrails::BLOCKED_MESSAGE.to_string())],
            "guardrail_intervened".to_string(),
        )
    } else {
        model_reply(&checked, last_user, &prompt, &faults)?
    };
    if let Some(forced) = &faults.stop_reason {
        stop_reason.clone_from(forced);
    }

    let total_words = prompt_words(checked.system, checked.messages);
    let cached = if intervened || faults.error.is_some() {
        None
    } else {
        prompt_cache::cache_prefix(invocation.model_id, checked.system, checked.messages)
            .map(|prefix| (invocation.prompt_cache.touch(&prefix), prefix.words as u64))
    };
    let (cache_read, cache_write) = match cached {
        Some((CacheOutcome::Write, words)) => (Some(0), Some(words)),
        Some((CacheOutcome::Read, words)) => (Some(words), Some(0)),
        None => (None, None),
    };
    let cached_words = cache_read.unwrap_or(0) + cache_write.unwrap_or(0);
    let usage = Usage {
        input_tokens: (total_words as u64).saturating_sub(cached_words).max(1),
        output_tokens: blocks.iter().map(ReplyBlock::output_words).sum::<usize>() as u64,
        cache_read_input_tokens: cache_read,
        cache_write_input_tokens: cache_write,
    };
    let image_sha256 = checked
        .attachments
        .iter()
        .filter_map(|(_, attachment)| match attachment {
            Attachment::Image { sha256, .. } => Some(sha256.clone()),
            Attachment::Document { .. } => None,
        })
        .collect();
    Ok(ReplyPlan {
        blocks,
        stop_reason,
        usage,
        faults,
        image_sha256,
    })
}

/// The Converse response document.
pub fn response_body(plan: &ReplyPlan, latency_ms: u64) -> Value {
    let content: Vec<Value> = plan.blocks.iter().map(ReplyBlock::to_json).collect();
    json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": content,
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

    const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    const SONNET_37: &str = "anthropic.claude-3-7-sonnet-20250219-v1:0";

    fn plan_for(body: Value, model_id: &str, cache: &PromptCache) -> Result<ReplyPlan, Error> {
        plan_reply(
            &request(body),
            &Invocation {
                model_id,
                prompt_cache: cache,
            },
        )
    }

    fn plan(body: Value) -> ReplyPlan {
        plan_for(body, SONNET, &PromptCache::default()).unwrap()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    fn validation_message(body: Value) -> String {
        let error = plan_for(body, SONNET, &PromptCache::default()).unwrap_err();
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
                {"role": "user", "content": [{"text": "  Hello"}, {"image": {"format": "png", "source": {"bytes": "aGk="}}}, {"text": "world  "}]},
            ]
        }));
        assert_eq!(reply.text(), "Echo: Hello world [image/png 2 bytes]");
        assert_eq!(reply.stop_reason, "end_turn");
        // 2 system + 2 + 2 + 2 message words.
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 8,
                output_tokens: 6,
                ..Usage::default()
            }
        );
        assert_eq!(reply.usage.total_tokens(), 14);
    }

    #[test]
    fn directives_are_stripped_and_counted_as_input() {
        let reply = plan(json!({"messages": [user("hi [[emu:delay-first=5]] there")]}));
        assert_eq!(reply.text(), "Echo: hi  there");
        assert_eq!(reply.faults.delay_first, Duration::from_millis(5));
        assert_eq!(reply.usage.input_tokens, 3);
        assert_eq!(reply.usage.output_tokens, 3);
    }

    #[test]
    fn directive_only_prompt_echoes_nothing() {
        let reply = plan(json!({"messages": [user("[[emu:stop=content_filtered]]")]}));
        assert_eq!(reply.text(), "Echo:");
        assert_eq!(reply.stop_reason, "content_filtered");
        assert_eq!(reply.usage.output_tokens, 1);
    }

    #[test]
    fn generates_words_for_benchmarks() {
        let reply = plan(json!({"messages": [user("[[emu:words=4]] ignored")]}));
        assert_eq!(reply.text(), "Echo: w1 w2 w3 w4");
        assert_eq!(reply.usage.output_tokens, 5);
    }

    #[test]
    fn max_tokens_truncates() {
        let reply = plan(json!({
            "messages": [user("one two three four")],
            "inferenceConfig": {"maxTokens": 3}
        }));
        assert_eq!(reply.text(), "Echo: one two");
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
        assert_eq!(reply.text(), "Echo: alpha beta ");
        assert_eq!(reply.stop_reason, "stop_sequence");
        assert_eq!(reply.usage.output_tokens, 3);

        let truncated_first = plan(json!({
            "messages": [user("alpha beta STOP")],
            "inferenceConfig": {"stopSequences": ["STOP"], "maxTokens": 2}
        }));
        assert_eq!(truncated_first.text(), "Echo: alpha");
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

    fn weather_tools(choice: Value) -> Value {
        json!({
            "tools": [
                {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
                    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}
                }}}},
                {"toolSpec": {"name": "get_time", "description": "Time", "inputSchema": {"json": {"type": "object"}}}}
            ],
            "toolChoice": choice
        })
    }

    fn tool_calls(plan: &ReplyPlan) -> Vec<&ToolCall> {
        plan.blocks
            .iter()
            .filter_map(|block| match block {
                ReplyBlock::ToolUse(call) => Some(call),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn forced_tool_choices_call_tools_without_text() {
        let any = plan(
            json!({"messages": [user("weather?")], "toolConfig": weather_tools(json!({"any": {}}))}),
        );
        assert_eq!(any.stop_reason, "tool_use");
        assert_eq!(any.blocks.len(), 1);
        let call = tool_calls(&any)[0];
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.input, json!({"city": "city-value", "days": 1}));
        assert!(call.tool_use_id.starts_with("tooluse_0_"));
        assert_eq!(any.usage.output_tokens, 1);

        let named = plan(
            json!({"messages": [user("time?")], "toolConfig": weather_tools(json!({"tool": {"name": "get_time"}}))}),
        );
        assert_eq!(tool_calls(&named)[0].name, "get_time");
        assert_eq!(tool_calls(&named)[0].input, json!({}));

        let auto = plan(
            json!({"messages": [user("hi")], "toolConfig": weather_tools(json!({"auto": {}}))}),
        );
        assert_eq!(auto.stop_reason, "end_turn");
        assert_eq!(auto.text(), "Echo: hi");
    }

    #[test]
    fn the_tool_calls_directive_makes_parallel_calls_after_the_text() {
        let reply = plan(json!({
            "messages": [user("both [[emu:tool-calls=2]]")],
            "toolConfig": weather_tools(Value::Null)
        }));
        assert_eq!(reply.stop_reason, "tool_use");
        assert_eq!(reply.blocks[0], ReplyBlock::Text("Echo: both".into()));
        let names: Vec<&str> = tool_calls(&reply)
            .iter()
            .map(|call| call.name.as_str())
            .collect();
        assert_eq!(names, ["get_weather", "get_time"]);
        assert!(
            validation_message(json!({"messages": [user("[[emu:tool-calls=1]]")]}))
                .contains("needs a request with a toolConfig")
        );
    }

    fn tool_loop(result_id: &str) -> Value {
        json!({
            "toolConfig": weather_tools(json!({"any": {}})),
            "messages": [
                user("weather?"),
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather", "input": {"city": "Rome"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "sunny"}]}},
                    {"toolResult": {"toolUseId": result_id, "content": [{"json": {"sky": "rain"}}]}}
                ]}
            ]
        })
    }

    #[test]
    fn tool_results_are_echoed() {
        let reply = plan(tool_loop("tooluse_b"));
        assert_eq!(reply.text(), r#"Echo: sunny {"sky":"rain"}"#);
        assert_eq!(reply.stop_reason, "end_turn");
        assert!(tool_calls(&reply).is_empty());
        assert!(
            validation_message(tool_loop("tooluse_zzz"))
                .contains("unexpected `tool_use_id` found in `tool_result` blocks: tooluse_zzz")
        );
        let mut without_config = tool_loop("tooluse_b");
        without_config["toolConfig"] = Value::Null;
        assert_eq!(
            validation_message(without_config),
            tools::TOOL_CONFIG_REQUIRED
        );
        let mut empty = tool_loop("tooluse_b");
        empty["toolConfig"] = json!({"tools": []});
        assert!(validation_message(empty).contains("'toolConfig.tools'"));
    }

    fn thinking(budget: u64) -> Value {
        json!({"thinking": {"type": "enabled", "budget_tokens": budget}})
    }

    #[test]
    fn thinking_models_reason_before_answering() {
        let cache = PromptCache::default();
        let reply = plan_for(
            json!({"messages": [user("why is the sky blue")], "additionalModelRequestFields": thinking(1024),
                   "inferenceConfig": {"maxTokens": 2000}}),
            SONNET_37,
            &cache,
        )
        .unwrap();
        let ReplyBlock::Reasoning { text, signature } = &reply.blocks[0] else {
            panic!("reasoning first: {:?}", reply.blocks);
        };
        assert_eq!(text, "Thinking about: why is the sky blue");
        assert_eq!(signature, &reasoning::signature(text));
        assert_eq!(
            reply.blocks[1],
            ReplyBlock::Text("Echo: why is the sky blue".into())
        );
        assert_eq!(reply.usage.output_tokens, 7 + 6);

        let refused = plan_for(
            json!({"messages": [user("x")], "additionalModelRequestFields": thinking(1024)}),
            SONNET,
            &cache,
        )
        .unwrap_err();
        assert!(refused.as_service().1.contains("extraneous key [thinking]"));

        let forced = plan_for(
            json!({"messages": [user("x")], "additionalModelRequestFields": thinking(1024),
                   "toolConfig": weather_tools(json!({"any": {}}))}),
            SONNET_37,
            &cache,
        )
        .unwrap_err();
        assert!(
            forced
                .as_service()
                .1
                .contains("tool_choice forces tool use")
        );

        let with_tools = plan_for(
            json!({"messages": [user("x [[emu:tool-calls=1]]")], "additionalModelRequestFields": thinking(1024),
                   "toolConfig": weather_tools(json!({"auto": {}}))}),
            SONNET_37,
            &cache,
        )
        .unwrap();
        assert!(matches!(with_tools.blocks[0], ReplyBlock::Reasoning { .. }));
        assert!(matches!(with_tools.blocks[1], ReplyBlock::Text(_)));
        assert!(matches!(with_tools.blocks[2], ReplyBlock::ToolUse(_)));
    }

    #[test]
    fn only_the_last_user_message_attachments_are_echoed() {
        let reply = plan(json!({"messages": [
            {"role": "user", "content": [{"text": "old"}, {"image": {"format": "gif", "source": {"bytes": "aGk="}}}]},
            {"role": "assistant", "content": [{"text": "seen"}]},
            {"role": "user", "content": [
                {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": "JVBERi0x"}}},
                {"text": "summarise"},
                {"image": {"format": "webp", "source": {"bytes": "AAAA"}}}
            ]}
        ]}));
        assert_eq!(
            reply.text(),
            "Echo: summarise [document Q3 report pdf 6 bytes] [image/webp 3 bytes]"
        );
        assert_eq!(
            reply.image_sha256,
            [
                "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
                "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"
            ],
            "every image of the request, echoed or not, in order"
        );
        let bad = json!({"messages": [{"role": "user", "content": [
            {"text": "x"}, {"image": {"format": "tiff", "source": {"bytes": "aGk="}}}
        ]}]});
        assert!(
            validation_message(bad).contains("'messages.1.member.content.2.member.image.format'")
        );
    }

    #[test]
    fn cache_points_write_then_read() {
        let cache = PromptCache::default();
        let body = |question: &str| {
            json!({
                "system": [{"text": "You answer questions about the manual."}, {"cachePoint": {"type": "default"}}],
                "messages": [{"role": "user", "content": [
                    {"text": "The manual says many things"}, {"cachePoint": {"type": "default"}}, {"text": question}
                ]}]
            })
        };
        let first = plan_for(body("what now"), SONNET, &cache).unwrap();
        assert_eq!(first.usage.cache_write_input_tokens, Some(6 + 5));
        assert_eq!(first.usage.cache_read_input_tokens, Some(0));
        assert_eq!(first.usage.input_tokens, 2);
        let second = plan_for(body("and then"), SONNET, &cache).unwrap();
        assert_eq!(second.usage.cache_read_input_tokens, Some(11));
        assert_eq!(second.usage.cache_write_input_tokens, Some(0));
        assert_eq!(second.usage.input_tokens, 2);
        assert_eq!(
            second.usage.total_tokens(),
            2 + 11 + second.usage.output_tokens
        );
        let json = second.usage.to_json();
        assert_eq!(json["cacheReadInputTokens"], 11);
        assert_eq!(json["cacheWriteInputTokens"], 0);
        let other_model = plan_for(body("x"), SONNET_37, &cache).unwrap();
        assert_eq!(
            other_model.usage.cache_write_input_tokens,
            Some(11),
            "each model has its own cache"
        );
        let plain = plan(json!({"messages": [user("no cache")]}));
        assert_eq!(plain.usage.to_json().get("cacheReadInputTokens"), None);
        assert!(
            validation_message(json!({"messages": [{"role": "user", "content": [
                {"text": "x"}, {"cachePoint": {"type": "forever"}}
            ]}]}))
            .contains("cachePoint.type")
        );
    }

    #[test]
    fn guardrails_intervene_on_request() {
        let guardrail =
            json!({"guardrailIdentifier": "gr1", "guardrailVersion": "DRAFT", "trace": "enabled"});
        let reply = plan(
            json!({"messages": [user("bad [[emu:guardrail=intervene]]")], "guardrailConfig": guardrail}),
        );
        assert_eq!(reply.text(), guardrails::BLOCKED_MESSAGE);
        assert_eq!(reply.stop_reason, "guardrail_intervened");
        let passed = plan(json!({"messages": [user("fine")], "guardrailConfig": guardrail}));
        assert_eq!(passed.text(), "Echo: fine");
        let unguarded = plan(json!({"messages": [user("bad [[emu:guardrail=intervene]]")]}));
        assert_eq!(unguarded.text(), "Echo: bad");
        assert!(
            validation_message(json!({"messages": [user("x")],
                "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "v1"}}))
            .contains("guardrailConfig.guardrailVersion")
        );
    }

    #[test]
    fn request_metadata_is_validated() {
        let reply = plan(
            json!({"messages": [user("x")], "requestMetadata": {"user": "alice@example.com"}}),
        );
        assert_eq!(reply.text(), "Echo: x");
        assert!(
            validation_message(
                json!({"messages": [user("x")], "requestMetadata": {"user": "a<b"}})
            )
            .contains("'requestMetadata'")
        );
        assert!(
            parse_request(br#"{"requestMetadata": {"n": 1}}"#).is_err(),
            "values must be strings"
        );
    }

    #[test]
    fn response_body_holds_every_block_kind() {
        let body = response_body(
            &ReplyPlan {
                blocks: vec![
                    ReplyBlock::Reasoning {
                        text: "Thinking about: x".into(),
                        signature: "sig".into(),
                    },
                    ReplyBlock::Text("Echo: x".into()),
                    ReplyBlock::ToolUse(ToolCall {
                        tool_use_id: "tooluse_0_abc".into(),
                        name: "f".into(),
                        input: json!({"a": 1}),
                        input_json: r#"{"a":1}"#.into(),
                    }),
                ],
                stop_reason: "tool_use".into(),
                usage: Usage::default(),
                faults: Faults::default(),
                image_sha256: Vec::new(),
            },
            3,
        );
        let content = &body["output"]["message"]["content"];
        assert_eq!(
            content[0]["reasoningContent"]["reasoningText"],
            json!({"text": "Thinking about: x", "signature": "sig"})
        );
        assert_eq!(content[1]["text"], "Echo: x");
        assert_eq!(
            content[2]["toolUse"],
            json!({"toolUseId": "tooluse_0_abc", "name": "f", "input": {"a": 1}})
        );
    }
}
