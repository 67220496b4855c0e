//! OpenAI chat completion request -> Bedrock Converse input.

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock,
};

use crate::error::ApiError;
use crate::openai::{ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, Role};

/// Everything a Converse or ConverseStream call needs besides the model id.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseInput {
    pub system: Vec<SystemContentBlock>,
    pub messages: Vec<Message>,
    pub inference: Option<InferenceConfiguration>,
}

/// Parses a request body, naming the offending field on failure.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("The request body is not valid JSON: {inner}"), None)
        } else if path == "." {
            ApiError::invalid(format!("Invalid request body: {inner}"), None)
        } else {
            ApiError::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
        }
    })
}

/// Validates a parsed request and builds the Converse input.
pub fn to_converse_input(request: &ChatCompletionRequest) -> Result<ConverseInput, ApiError> {
    validate(request)?;
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();

    for (index, message) in request.messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                system.extend(
                    message_texts(message, index)?
                        .into_iter()
                        .map(SystemContentBlock::Text),
                );
            }
            Role::User | Role::Assistant => {
                let role = if message.role == Role::User {
                    ConversationRole::User
                } else {
                    ConversationRole::Assistant
                };
                let blocks: Vec<ContentBlock> = message_texts(message, index)?
                    .into_iter()
                    .map(ContentBlock::Text)
                    .collect();
                if blocks.is_empty() {
                    continue;
                }
                match turns.last_mut() {
                    Some((last_role, last_blocks)) if *last_role == role => {
                        last_blocks.extend(blocks)
                    }
                    _ => turns.push((role, blocks)),
                }
            }
            Role::Tool | Role::Function => {
                return Err(ApiError::invalid(
                    "Messages with role 'tool' or 'function' need tool support, which this gateway does not offer yet.",
                    Some(&format!("messages[{index}].role")),
                ));
            }
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

    Ok(ConverseInput {
        system,
        messages,
        inference: inference_configuration(request)?,
    })
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
    if request
        .tools
        .as_ref()
        .is_some_and(|tools| !tools.is_empty())
    {
        return Err(ApiError::invalid(
            "Tool definitions are not supported by this gateway yet.",
            Some("tools"),
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

fn message_texts(message: &ChatMessage, index: usize) -> Result<Vec<String>, ApiError> {
    let texts = match &message.content {
        None => Vec::new(),
        Some(MessageContent::Text(text)) => vec![text.clone()],
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(part_index, part)| match part {
                ContentPart::Text { text } => Ok(text.clone()),
                ContentPart::Refusal { refusal } => Ok(refusal.clone()),
                ContentPart::ImageUrl { .. }
                | ContentPart::InputAudio { .. }
                | ContentPart::File { .. } => Err(ApiError::invalid(
                    "Only text content parts are supported by this gateway yet.",
                    Some(&format!("messages[{index}].content[{part_index}].type")),
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    // Bedrock refuses blank text blocks, and they carry nothing.
    Ok(texts
        .into_iter()
        .filter(|text| !text.trim().is_empty())
        .collect())
}

fn inference_configuration(
    request: &ChatCompletionRequest,
) -> Result<Option<InferenceConfiguration>, ApiError> {
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
    let stop_sequences: Vec<String> = request
        .stop
        .clone()
        .map(|stop| stop.into_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|sequence| !sequence.is_empty())
        .collect();

    if max_tokens.is_none()
        && request.temperature.is_none()
        && request.top_p.is_none()
        && stop_sequences.is_empty()
    {
        return Ok(None);
    }
    Ok(Some(
        InferenceConfiguration::builder()
            .set_max_tokens(max_tokens)
            .set_temperature(request.temperature)
            .set_top_p(request.top_p)
            .set_stop_sequences((!stop_sequences.is_empty()).then_some(stop_sequences))
            .build(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> ChatCompletionRequest {
        parse_chat_request(value.to_string().as_bytes()).expect("valid request")
    }

    fn convert(value: serde_json::Value) -> Result<ConverseInput, ApiError> {
        to_converse_input(&parse(value))
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
                json!([{"type": "function", "function": {"name": "f"}}]),
                "tools",
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
    fn non_text_parts_and_tool_roles_are_refused_by_position() {
        let error = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
            ]}]}),
        )
        .unwrap_err();
        assert_eq!(
            param_of(error).as_deref(),
            Some("messages[0].content[1].type")
        );
        let error = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "content": "42", "tool_call_id": "t"}
        ]}))
        .unwrap_err();
        assert_eq!(param_of(error).as_deref(), Some("messages[1].role"));
    }
}
