//! Bedrock Converse output -> OpenAI chat completion.

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConverseOutput as ConverseOutputMember, ReasoningContentBlock, StopReason,
    TokenUsage,
};

use crate::openai::{
    AssistantMessage, ChatCompletion, Choice, FinishReason, FunctionCall, PromptTokensDetails,
    ToolCall, Usage,
};
use crate::translate::tools::document_to_json;

/// Identity of one completion, shared by every chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionMeta {
    pub id: String,
    pub created: u64,
    /// The model name exactly as the client sent it.
    pub model: String,
    /// The tool whose input is the structured (`response_format`) reply.
    pub response_tool: Option<String>,
}

pub fn finish_reason(stop_reason: &StopReason) -> FinishReason {
    match stop_reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

pub fn usage(token_usage: Option<&TokenUsage>) -> Usage {
    let Some(token_usage) = token_usage else {
        return Usage::default();
    };
    let prompt = non_negative(token_usage.input_tokens)
        + token_usage.cache_read_input_tokens.map_or(0, non_negative)
        + token_usage.cache_write_input_tokens.map_or(0, non_negative);
    let completion = non_negative(token_usage.output_tokens);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: token_usage.cache_read_input_tokens.map_or(0, non_negative),
        },
    }
}

fn non_negative(count: i32) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

pub fn to_chat_completion(output: &ConverseOutput, meta: &CompletionMeta) -> ChatCompletion {
    let blocks = match &output.output {
        Some(ConverseOutputMember::Message(message)) => message.content(),
        _ => &[],
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(part) => text.push_str(part),
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(thought)) => {
                reasoning.push_str(thought.text())
            }
            ContentBlock::ToolUse(tool_use)
                if meta.response_tool.as_deref() == Some(tool_use.name()) =>
            {
                text.push_str(&document_to_json(tool_use.input()).to_string())
            }
            ContentBlock::ToolUse(tool_use) => tool_calls.push(ToolCall {
                id: tool_use.tool_use_id().to_owned(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: tool_use.name().to_owned(),
                    arguments: document_to_json(tool_use.input()).to_string(),
                },
            }),
            _ => {}
        }
    }
    let finish = match finish_reason(&output.stop_reason) {
        FinishReason::ToolCalls if tool_calls.is_empty() => FinishReason::Stop,
        other => other,
    };
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(text)
    };
    ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion",
        created: meta.created,
        model: meta.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: usage(output.usage.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{ConversationRole, Message};

    fn meta() -> CompletionMeta {
        CompletionMeta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "gpt-4o".into(),
            response_tool: None,
        }
    }

    fn token_usage(input: i32, output: i32, cache_read: Option<i32>) -> TokenUsage {
        TokenUsage::builder()
            .input_tokens(input)
            .output_tokens(output)
            .total_tokens(input + output)
            .set_cache_read_input_tokens(cache_read)
            .build()
            .unwrap()
    }

    fn output(
        blocks: Vec<ContentBlock>,
        stop: StopReason,
        tokens: Option<TokenUsage>,
    ) -> ConverseOutput {
        let message = Message::builder()
            .role(ConversationRole::Assistant)
            .set_content(Some(blocks))
            .build()
            .unwrap();
        ConverseOutput::builder()
            .output(ConverseOutputMember::Message(message))
            .stop_reason(stop)
            .set_usage(tokens)
            .build()
            .unwrap()
    }

    #[test]
    fn every_stop_reason_has_a_finish_reason() {
        let cases = [
            (StopReason::EndTurn, FinishReason::Stop),
            (StopReason::StopSequence, FinishReason::Stop),
            (StopReason::MaxTokens, FinishReason::Length),
            (StopReason::ModelContextWindowExceeded, FinishReason::Length),
            (StopReason::ToolUse, FinishReason::ToolCalls),
            (StopReason::GuardrailIntervened, FinishReason::ContentFilter),
            (StopReason::ContentFiltered, FinishReason::ContentFilter),
            (StopReason::MalformedModelOutput, FinishReason::Stop),
            (StopReason::from("something_new"), FinishReason::Stop),
        ];
        for (stop, expected) in cases {
            assert_eq!(finish_reason(&stop), expected, "{stop:?}");
        }
    }

    #[test]
    fn text_blocks_are_joined_and_usage_is_reported() {
        let completion = to_chat_completion(
            &output(
                vec![
                    ContentBlock::Text("Hello".into()),
                    ContentBlock::Text(", world".into()),
                ],
                StopReason::EndTurn,
                Some(token_usage(12, 3, None)),
            ),
            &meta(),
        );
        let json = serde_json::to_value(&completion).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world"},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                          "prompt_tokens_details": {"cached_tokens": 0}}
            })
        );
    }

    #[test]
    fn cached_prompt_tokens_count_as_prompt_tokens() {
        assert_eq!(
            usage(Some(&token_usage(10, 5, Some(90)))),
            Usage {
                prompt_tokens: 100,
                completion_tokens: 5,
                total_tokens: 105,
                prompt_tokens_details: PromptTokensDetails { cached_tokens: 90 },
            }
        );
        assert_eq!(usage(None), Usage::default());
        assert_eq!(usage(Some(&token_usage(-1, 2, None))).prompt_tokens, 0);
    }

    #[test]
    fn tool_uses_become_tool_calls_and_reasoning_is_returned() {
        use aws_sdk_bedrockruntime::types::{ReasoningTextBlock, ToolUseBlock};
        let tool_use = |id: &str, city: &str| {
            ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id(id)
                    .name("get_weather")
                    .input(crate::translate::tools::json_to_document(
                        &serde_json::json!({"city": city}),
                    ))
                    .build()
                    .unwrap(),
            )
        };
        let thought = ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
            ReasoningTextBlock::builder()
                .text("need weather")
                .signature("sig")
                .build()
                .unwrap(),
        ));
        let completion = to_chat_completion(
            &output(
                vec![thought, tool_use("t1", "Paris"), tool_use("t2", "Rome")],
                StopReason::ToolUse,
                None,
            ),
            &meta(),
        );
        let message = serde_json::to_value(&completion.choices[0].message).unwrap();
        assert_eq!(
            message,
            serde_json::json!({"role": "assistant", "content": null, "reasoning_content": "need weather",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]})
        );
        assert_eq!(completion.choices[0].finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn a_structured_reply_is_plain_content() {
        use aws_sdk_bedrockruntime::types::ToolUseBlock;
        let answer = ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id("t")
                .name("verdict")
                .input(crate::translate::tools::json_to_document(
                    &serde_json::json!({"ok": true}),
                ))
                .build()
                .unwrap(),
        );
        let mut structured = meta();
        structured.response_tool = Some("verdict".into());
        let completion = to_chat_completion(
            &output(vec![answer], StopReason::ToolUse, None),
            &structured,
        );
        assert_eq!(
            completion.choices[0].message.content.as_deref(),
            Some("{\"ok\":true}")
        );
        assert_eq!(completion.choices[0].message.tool_calls, None);
        assert_eq!(completion.choices[0].finish_reason, FinishReason::Stop);
    }

    #[test]
    fn a_reply_without_message_has_empty_content() {
        let reply = ConverseOutput::builder()
            .stop_reason(StopReason::ContentFiltered)
            .build()
            .unwrap();
        let completion = to_chat_completion(&reply, &meta());
        assert_eq!(completion.choices[0].message.content.as_deref(), Some(""));
        assert_eq!(
            completion.choices[0].finish_reason,
            FinishReason::ContentFilter
        );
        assert_eq!(completion.usage, Usage::default());
    }
}
