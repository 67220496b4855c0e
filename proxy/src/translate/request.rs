//! OpenAI chat completion request -> Bedrock Converse input.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, ContentBlock, ConversationRole, InferenceConfiguration,
    Message, SystemContentBlock, ToolConfiguration, ToolResultBlock, ToolResultContentBlock,
    ToolUseBlock,
};
use aws_smithy_types::Document;

use crate::error::ApiError;
use crate::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, NamedFunction,
    NamedToolChoice, Role, ToolChoice, ToolChoiceMode,
};
use crate::translate::content::part_to_block;
use crate::translate::reasoning;
use crate::translate::structured;
use crate::translate::tools::{json_to_document, tool_configuration};

/// Everything a Converse or ConverseStream call needs besides the model id.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseInput {
    pub system: Vec<SystemContentBlock>,
    pub messages: Vec<Message>,
    pub inference: Option<InferenceConfiguration>,
    pub tool_config: Option<ToolConfiguration>,
    pub additional_fields: Option<Document>,
    pub request_metadata: Option<HashMap<String, String>>,
    /// The tool that carries a structured (`response_format`) reply.
    pub response_tool: Option<String>,
}

/// Gateway-wide settings that shape the translation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslationSettings {
    /// Insert cache points for models that support prompt caching.
    pub prompt_caching: bool,
}

/// Parses a request body, naming the offending field on failure.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    super::parse_json_body(body)
}

/// Validates a parsed request and builds the Converse input for the Bedrock
/// model it resolved to (reasoning settings differ per model family).
pub fn to_converse_input(
    request: &ChatCompletionRequest,
    bedrock_model_id: &str,
    settings: &TranslationSettings,
) -> Result<ConverseInput, ApiError> {
    validate(request)?;
    let response_tool = structured::response_tool(request.response_format.as_ref())?;
    let mut tools = request.tools.clone().unwrap_or_default();
    let tool_choice = match &response_tool {
        None => request.tool_choice.clone(),
        Some(tool) => {
            let choice = if tools.is_empty() {
                ToolChoice::Named(NamedToolChoice {
                    function: NamedFunction {
                        name: tool.function.name.clone(),
                    },
                })
            } else {
                ToolChoice::Mode(ToolChoiceMode::Required)
            };
            tools.push(tool.clone());
            Some(choice)
        }
    };
    let tool_config = tool_configuration(&tools, tool_choice.as_ref())?;
    let tools_enabled = tool_config.is_some();
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();

    for (index, message) in request.messages.iter().enumerate() {
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => {
                system.extend(
                    content_blocks(message, index)?
                        .into_iter()
                        .filter_map(|block| match block {
                            ContentBlock::Text(text) => Some(SystemContentBlock::Text(text)),
                            _ => None,
                        }),
                );
                continue;
            }
            Role::User => (ConversationRole::User, content_blocks(message, index)?),
            Role::Assistant => {
                let mut blocks = content_blocks(message, index)?;
                blocks.extend(tool_call_blocks(message, index, tools_enabled)?);
                (ConversationRole::Assistant, blocks)
            }
            Role::Tool => (
                ConversationRole::User,
                vec![tool_result_block(message, index, tools_enabled)?],
            ),
            Role::Function => {
                return Err(ApiError::invalid(
                    "The legacy 'function' role is not supported; use tool_calls and 'tool' messages.",
                    Some(&format!("messages[{index}].role")),
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    if turns.is_empty() {
        return Err(ApiError::invalid(
            "At least one user or assistant message with content is required.",
            Some("messages"),
        ));
    }

    let messages = turns
        .into_iter()
        .map(|(role, content)| {
            Message::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(|error| ApiError::Internal(format!("building a Bedrock message: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut messages = messages;
    if request.prompt_caching.unwrap_or(settings.prompt_caching)
        && supports_prompt_caching(bedrock_model_id)
    {
        insert_cache_points(&mut system, &mut messages)?;
    }
    let mut sampling = Sampling::from_request(request)?;
    let forced_tool_choice = tool_config
        .as_ref()
        .and_then(|config| config.tool_choice())
        .is_some_and(|choice| !choice.is_auto());
    let additional_fields =
        reasoning::additional_fields(request, bedrock_model_id, &mut sampling, forced_tool_choice)?;
    Ok(ConverseInput {
        system,
        messages,
        inference: sampling.into_inference_configuration(),
        tool_config,
        additional_fields,
        request_metadata: request_metadata(request),
        response_tool: response_tool.map(|tool| tool.function.name),
    })
}

/// Models with Bedrock prompt caching: Claude 3.5 Haiku, 3.7 Sonnet, Claude 4
/// and later, and Amazon Nova.
pub fn supports_prompt_caching(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    id.contains("amazon.nova")
        || id.contains("claude-3-5-haiku")
        || reasoning::family_of(&id) == reasoning::ReasoningFamily::ClaudeThinking
}

fn cache_point() -> Result<CachePointBlock, ApiError> {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .build()
        .map_err(|error| ApiError::Internal(format!("building a cache point: {error}")))
}

/// A cache point after the system prompt and one after the conversation so
/// far, so the next turn reads the whole prefix from the cache.
fn insert_cache_points(
    system: &mut Vec<SystemContentBlock>,
    messages: &mut [Message],
) -> Result<(), ApiError> {
    if !system.is_empty() {
        system.push(SystemContentBlock::CachePoint(cache_point()?));
    }
    if let Some(last) = messages.last_mut() {
        let mut content = last.content().to_vec();
        content.push(ContentBlock::CachePoint(cache_point()?));
        *last = Message::builder()
            .role(last.role().clone())
            .set_content(Some(content))
            .build()
            .map_err(|error| ApiError::Internal(format!("building a Bedrock message: {error}")))?;
    }
    Ok(())
}

fn validate(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    if request.model.trim().is_empty() {
        return Err(ApiError::invalid(
            "'model' must not be empty.",
            Some("model"),
        ));
    }
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            "'messages' must contain at least one message.",
            Some("messages"),
        ));
    }
    if let Some(n) = request.n
        && n != 1
    {
        return Err(ApiError::invalid(
            format!("n={n} is not supported: Bedrock returns one choice per request."),
            Some("n"),
        ));
    }
    if request.logprobs == Some(true) {
        return Err(ApiError::invalid(
            "logprobs are not available from Bedrock.",
            Some("logprobs"),
        ));
    }
    if let Some(temperature) = request.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and 2, got {temperature}."),
            Some("temperature"),
        ));
    }
    // Tool call arguments are JSON inside strings, parsed on their own: they
    // share the body's structure budget.
    let mut arguments_structure = 0;
    for message in &request.messages {
        for call in message.tool_calls.iter().flatten() {
            let budget = super::MAX_JSON_STRUCTURE - arguments_structure;
            arguments_structure +=
                super::json_structure(call.function.arguments.as_bytes(), budget);
            if arguments_structure > super::MAX_JSON_STRUCTURE {
                return Err(super::too_much_structure(super::MAX_JSON_STRUCTURE));
            }
        }
    }
    if let Some(top_p) = request.top_p
        && !(0.0..=1.0).contains(&top_p)
    {
        return Err(ApiError::invalid(
            format!("top_p must be between 0 and 1, got {top_p}."),
            Some("top_p"),
        ));
    }
    Ok(())
}

fn content_blocks(message: &ChatMessage, index: usize) -> Result<Vec<ContentBlock>, ApiError> {
    match &message.content {
        None => Ok(Vec::new()),
        // Bedrock refuses blank text blocks, and they carry nothing.
        Some(MessageContent::Text(text)) if text.trim().is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![ContentBlock::Text(text.clone())]),
        Some(MessageContent::Parts(parts)) => {
            let mut blocks = Vec::new();
            for (part_index, part) in parts.iter().enumerate() {
                let param = format!("messages[{index}].content[{part_index}]");
                blocks.extend(part_to_block(part, &param, part_index)?);
            }
            Ok(blocks)
        }
    }
}

fn text_of(message: &ChatMessage) -> String {
    match &message.content {
        None => String::new(),
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Assistant tool calls as `toolUse` blocks, or as plain text when the
/// request carries no tools (Bedrock refuses tool blocks without a toolConfig).
fn tool_call_blocks(
    message: &ChatMessage,
    index: usize,
    tools_enabled: bool,
) -> Result<Vec<ContentBlock>, ApiError> {
    let Some(calls) = &message.tool_calls else {
        return Ok(Vec::new());
    };
    calls
        .iter()
        .enumerate()
        .map(|(call_index, call)| {
            let param = format!("messages[{index}].tool_calls[{call_index}].function.arguments");
            let arguments = if call.function.arguments.trim().is_empty() {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_str(&call.function.arguments).map_err(|error| {
                    ApiError::invalid(
                        format!("Tool call arguments are not valid JSON: {error}"),
                        Some(&param),
                    )
                })?
            };
            // OpenAI's arguments are always an object; Bedrock refuses
            // anything else as a toolUse input.
            if !arguments.is_object() {
                return Err(ApiError::invalid(
                    "Tool call arguments must be a JSON object.",
                    Some(&param),
                ));
            }
            if !tools_enabled {
                return Ok(ContentBlock::Text(format!(
                    "[called tool {} with {}]",
                    call.function.name, arguments
                )));
            }
            if call.id.is_empty() {
                return Err(ApiError::invalid(
                    "A tool call needs its id.",
                    Some(&format!("messages[{index}].tool_calls[{call_index}].id")),
                ));
            }
            ToolUseBlock::builder()
                .tool_use_id(&call.id)
                .name(&call.function.name)
                .input(json_to_document(&arguments))
                .build()
                .map(ContentBlock::ToolUse)
                .map_err(|error| ApiError::invalid(error.to_string(), Some(&param)))
        })
        .collect()
}

fn tool_result_block(
    message: &ChatMessage,
    index: usize,
    tools_enabled: bool,
) -> Result<ContentBlock, ApiError> {
    let param = format!("messages[{index}].tool_call_id");
    let tool_call_id = message
        .tool_call_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("A 'tool' message needs its tool_call_id.", Some(&param))
        })?;
    let text = text_of(message);
    let text = if text.trim().is_empty() {
        "(no output)".to_owned()
    } else {
        text
    };
    if !tools_enabled {
        return Ok(ContentBlock::Text(format!(
            "[result of tool call {tool_call_id}: {text}]"
        )));
    }
    ToolResultBlock::builder()
        .tool_use_id(tool_call_id)
        .content(ToolResultContentBlock::Text(text))
        .build()
        .map(ContentBlock::ToolResult)
        .map_err(|error| ApiError::invalid(error.to_string(), Some(&param)))
}

/// Bedrock's requestMetadata: at most 16 pairs, keys of 1-256 and values of
/// 0-256 characters from a restricted set; anything else is cleaned or left out.
const METADATA_MAX_ENTRIES: usize = 16;
const METADATA_MAX_CHARS: usize = 256;

fn metadata_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            // Bedrock's pattern uses `\s`, which it applies to ASCII only.
            if c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || ":_@$#=/+,-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(METADATA_MAX_CHARS)
        .collect()
}

pub fn request_metadata(request: &ChatCompletionRequest) -> Option<HashMap<String, String>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(user) = request.user.as_deref().filter(|user| !user.is_empty()) {
        pairs.push(("user".to_owned(), metadata_safe(user)));
    }
    if let Some(metadata) = &request.metadata {
        for (key, value) in metadata {
            // Stopping here keeps the duplicate check below constant-time
            // however many keys a request sends.
            if pairs.len() >= METADATA_MAX_ENTRIES {
                break;
            }
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let key = metadata_safe(key);
            if !key.trim().is_empty() && !pairs.iter().any(|(existing, _)| *existing == key) {
                pairs.push((key, metadata_safe(&value)));
            }
        }
    }
    pairs.truncate(METADATA_MAX_ENTRIES);
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

/// Sampling settings, which reasoning may have to adjust before they are sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<i32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop_sequences: Vec<String>,
}

impl Sampling {
    fn from_request(request: &ChatCompletionRequest) -> Result<Self, ApiError> {
        let max_tokens = match request.max_completion_tokens.or(request.max_tokens) {
            None => None,
            Some(0) => {
                return Err(ApiError::invalid(
                    "max_tokens must be at least 1.",
                    Some(if request.max_completion_tokens.is_some() {
                        "max_completion_tokens"
                    } else {
                        "max_tokens"
                    }),
                ));
            }
            Some(value) => Some(i32::try_from(value).unwrap_or(i32::MAX)),
        };
        Ok(Self {
            max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: request
                .stop
                .clone()
                .map(|stop| stop.into_vec())
                .unwrap_or_default()
                .into_iter()
                .filter(|sequence| !sequence.is_empty())
                .collect(),
        })
    }

    fn into_inference_configuration(self) -> Option<InferenceConfiguration> {
        if self == Sampling::default() {
            return None;
        }
        Some(
            InferenceConfiguration::builder()
                .set_max_tokens(self.max_tokens)
                .set_temperature(self.temperature)
                .set_top_p(self.top_p)
                .set_stop_sequences(
                    (!self.stop_sequences.is_empty()).then_some(self.stop_sequences),
                )
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> ChatCompletionRequest {
        parse_chat_request(value.to_string().as_bytes()).expect("valid request")
    }

    fn convert(value: serde_json::Value) -> Result<ConverseInput, ApiError> {
        to_converse_input(
            &parse(value),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            &TranslationSettings::default(),
        )
    }

    fn texts(message: &Message) -> Vec<&str> {
        message
            .content()
            .iter()
            .filter_map(|block| block.as_text().ok().map(String::as_str))
            .collect()
    }

    fn param_of(error: ApiError) -> Option<String> {
        match error {
            ApiError::InvalidRequest { param, .. } => param,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn system_and_developer_messages_become_system_blocks() {
        let input = convert(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use metric"}]},
            {"role": "user", "content": "hi"}
        ]}))
        .unwrap();
        assert_eq!(
            input.system,
            vec![
                SystemContentBlock::Text("be brief".into()),
                SystemContentBlock::Text("use metric".into())
            ]
        );
        assert_eq!(input.messages.len(), 1);
        assert_eq!(texts(&input.messages[0]), ["hi"]);
        assert_eq!(input.inference, None);
    }

    #[test]
    fn consecutive_turns_of_one_role_are_merged() {
        let input = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}]},
            {"role": "assistant", "content": "d"},
            {"role": "assistant", "content": "e"},
            {"role": "user", "content": "f"}
        ]}))
        .unwrap();
        let shape: Vec<(ConversationRole, Vec<&str>)> = input
            .messages
            .iter()
            .map(|message| (message.role().clone(), texts(message)))
            .collect();
        assert_eq!(
            shape,
            vec![
                (ConversationRole::User, vec!["a", "b", "c"]),
                (ConversationRole::Assistant, vec!["d", "e"]),
                (ConversationRole::User, vec!["f"]),
            ]
        );
    }

    #[test]
    fn blank_and_null_contents_are_dropped_and_neighbours_merge() {
        let input = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": null},
            {"role": "assistant", "content": "  "},
            {"role": "user", "content": "b"}
        ]}))
        .unwrap();
        assert_eq!(input.messages.len(), 1);
        assert_eq!(texts(&input.messages[0]), ["a", "b"]);
    }

    #[test]
    fn inference_parameters_are_mapped() {
        let input = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "temperature": 0.5, "top_p": 0.9, "stop": "END"}),
        )
        .unwrap();
        let inference = input.inference.unwrap();
        assert_eq!(inference.max_tokens(), Some(10));
        assert_eq!(inference.temperature(), Some(0.5));
        assert_eq!(inference.top_p(), Some(0.9));
        assert_eq!(inference.stop_sequences(), ["END"]);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens_and_stop_lists_are_kept() {
        let input = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "", "b"]}),
        )
        .unwrap();
        let inference = input.inference.unwrap();
        assert_eq!(inference.max_tokens(), Some(20));
        assert_eq!(inference.stop_sequences(), ["a", "b"]);
    }

    #[test]
    fn unknown_fields_and_empty_tools_are_ignored() {
        let input = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "frobnicate": {"deep": true}, "tools": [], "stream_options": {"include_usage": true},
            "n": 1, "logprobs": false}),
        )
        .unwrap();
        assert_eq!(input.messages.len(), 1);
    }

    #[test]
    fn unsupported_meaningful_fields_are_refused_with_their_name() {
        let base = || json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let cases = [
            ("n", json!(2), "n"),
            ("logprobs", json!(true), "logprobs"),
            ("temperature", json!(3.0), "temperature"),
            ("top_p", json!(1.5), "top_p"),
            ("max_tokens", json!(0), "max_tokens"),
            ("max_completion_tokens", json!(0), "max_completion_tokens"),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "a b"}}]),
                "tools[0].function.name",
            ),
            (
                "tool_choice",
                json!({"type": "function", "function": {"name": "nope"}}),
                "tool_choice",
            ),
        ];
        for (field, value, param) in cases {
            let mut request = base();
            request[field] = value;
            let error = convert(request).expect_err(field);
            assert_eq!(param_of(error).as_deref(), Some(param), "{field}");
        }
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let cases = [
            (json!({"messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": 5, "messages": []}), "model"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 7}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [], "max_tokens": "many"}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [], "temperature": "hot"}),
                "temperature",
            ),
        ];
        for (body, field) in cases {
            let error = parse_chat_request(body.to_string().as_bytes()).expect_err(field);
            let message = error.to_string();
            assert!(message.contains(field), "{message} should name {field}");
            assert_eq!(error.status().as_u16(), 400);
        }
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        for body in [&b"{"[..], b"not json", b"", b"[1,2]", b"\xff\xfe"] {
            let error = parse_chat_request(body).expect_err("malformed");
            assert_eq!(error.status().as_u16(), 400);
        }
    }

    #[test]
    fn empty_conversations_are_refused() {
        let error = convert(json!({"model": "m", "messages": []})).unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages"));
        let error =
            convert(json!({"model": "m", "messages": [{"role": "system", "content": "s"}]}))
                .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages"));
        let error = convert(json!({"model": " ", "messages": [{"role": "user", "content": "x"}]}))
            .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("model"));
    }

    #[test]
    fn bad_parts_and_tool_messages_are_refused_by_position() {
        let error = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}
            ]}]}),
        )
        .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages[0].content[1]"));
        let error = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "content": "42"}
        ]}))
        .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages[1].tool_call_id"));
        let error = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{not json"}}]}
        ]}))
        .unwrap_err();
        assert_eq!(
            param_of(error).as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        let error = convert(json!({"model": "m", "messages": [
            {"role": "function", "content": "x", "name": "f"}
        ]}))
        .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages[0].role"));
    }

    fn weather_tools() -> serde_json::Value {
        json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    fn tool_history() -> serde_json::Value {
        json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
            {"role": "user", "content": "thanks"}
        ])
    }

    #[test]
    fn tool_calls_and_results_become_tool_blocks() {
        let input =
            convert(json!({"model": "m", "tools": weather_tools(), "messages": tool_history()}))
                .unwrap();
        assert!(input.tool_config.is_some());
        assert_eq!(input.messages.len(), 3);
        let calls: Vec<(&str, serde_json::Value)> = input.messages[1]
            .content()
            .iter()
            .map(|block| {
                let tool_use = block.as_tool_use().unwrap();
                (
                    tool_use.tool_use_id(),
                    crate::translate::tools::document_to_json(tool_use.input()),
                )
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                ("call_1", json!({"city": "Paris"})),
                ("call_2", json!({"city": "Rome"}))
            ]
        );
        let results = input.messages[2].content();
        assert_eq!(
            results.len(),
            3,
            "both results and the next user text share one user turn"
        );
        let first = results[0].as_tool_result().unwrap();
        assert_eq!(first.tool_use_id(), "call_1");
        assert_eq!(first.content()[0].as_text().unwrap(), "sunny");
        assert_eq!(
            results[1].as_tool_result().unwrap().content()[0]
                .as_text()
                .unwrap(),
            "rainy"
        );
        assert_eq!(results[2].as_text().unwrap(), "thanks");
    }

    #[test]
    fn tool_history_without_tools_is_kept_as_text() {
        for extra in [
            json!({"tools": []}),
            json!({"tools": weather_tools(), "tool_choice": "none"}),
        ] {
            let mut body = json!({"model": "m", "messages": tool_history()});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let input = convert(body).unwrap();
            assert!(input.tool_config.is_none());
            assert!(
                input
                    .messages
                    .iter()
                    .flat_map(|m| m.content())
                    .all(|block| block.is_text())
            );
            assert!(texts(&input.messages[1])[0].contains("get_weather"));
            assert!(texts(&input.messages[2])[0].contains("call_1: sunny"));
        }
    }

    #[test]
    fn images_and_documents_become_blocks() {
        let input = convert(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,aGk="}}
        ]}]}))
        .unwrap();
        let blocks = input.messages[0].content();
        assert!(blocks[0].is_text() && blocks[1].is_image() && blocks[2].is_document());
    }

    #[test]
    fn user_and_metadata_become_request_metadata_within_limits() {
        let mut metadata = serde_json::Map::new();
        for index in 0..20 {
            metadata.insert(format!("k{index:02}"), json!(index));
        }
        metadata.insert("weird<key>".into(), json!("v\u{1F600}".repeat(200)));
        metadata.insert("note".into(), json!("a\u{2003}b"));
        let request = parse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "user": "alice@example.com", "metadata": metadata}),
        );
        let found = request_metadata(&request).unwrap();
        assert_eq!(found.len(), 16);
        assert_eq!(found["user"], "alice@example.com");
        assert_eq!(found["k00"], "0");
        assert!(found.values().all(|value| value.is_ascii()));
        assert!(found.keys().all(|key| !key.is_empty() && key.len() <= 256));
        assert!(found.values().all(|value| value.chars().count() <= 256));
        let plain = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(request_metadata(&plain), None);
    }

    #[test]
    fn response_formats_force_the_response_tool() {
        let input = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "verdict",
                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}),
        )
        .unwrap();
        assert_eq!(input.response_tool.as_deref(), Some("verdict"));
        let config = input.tool_config.unwrap();
        assert_eq!(
            config.tool_choice().unwrap().as_tool().unwrap().name(),
            "verdict"
        );

        let with_tools = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": weather_tools(), "response_format": {"type": "json_object"}}),
        )
        .unwrap();
        let config = with_tools.tool_config.unwrap();
        assert_eq!(config.tools().len(), 2);
        assert!(config.tool_choice().unwrap().is_any());
        assert_eq!(with_tools.response_tool.as_deref(), Some("json_response"));

        let plain = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"}}),
        )
        .unwrap();
        assert_eq!((plain.response_tool, plain.tool_config), (None, None));
    }

    #[test]
    fn cache_points_follow_the_system_prompt_and_the_conversation() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "long instructions"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}
        ]});
        let enabled = TranslationSettings {
            prompt_caching: true,
        };
        let model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
        let input = to_converse_input(&parse(body.clone()), model, &enabled).unwrap();
        assert!(input.system.last().unwrap().is_cache_point());
        assert_eq!(input.system.len(), 2);
        let last = input.messages.last().unwrap().content();
        assert!(last.last().unwrap().is_cache_point());
        assert_eq!(input.messages[0].content().len(), 1);

        let unsupported = to_converse_input(
            &parse(body.clone()),
            "meta.llama3-1-8b-instruct-v1:0",
            &enabled,
        )
        .unwrap();
        assert!(
            !unsupported
                .system
                .iter()
                .any(|block| block.is_cache_point())
        );

        let mut opted_out = body.clone();
        opted_out["prompt_caching"] = json!(false);
        let input = to_converse_input(&parse(opted_out), model, &enabled).unwrap();
        assert!(!input.system.iter().any(|block| block.is_cache_point()));

        let mut opted_in = body;
        opted_in["prompt_caching"] = json!(true);
        let input =
            to_converse_input(&parse(opted_in), model, &TranslationSettings::default()).unwrap();
        assert!(input.system.last().unwrap().is_cache_point());
        assert!(supports_prompt_caching("amazon.nova-lite-v1:0"));
        assert!(!supports_prompt_caching(
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        ));
    }

    #[test]
    fn reasoning_adjusts_the_inference_configuration() {
        let request = parse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low", "temperature": 0.3, "max_tokens": 1000}),
        );
        let input = to_converse_input(
            &request,
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            &TranslationSettings::default(),
        )
        .unwrap();
        assert!(input.additional_fields.is_some());
        let inference = input.inference.unwrap();
        assert_eq!(inference.max_tokens(), Some(2024));
        assert_eq!(inference.temperature(), None);
    }
}
