//! Bedrock Converse output -> OpenAI chat completion.

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConverseOutput as ConverseOutputMember, StopReason, TokenUsage,
};

use crate::openai::{AssistantMessage, ChatCompletion, Choice, FinishReason, Usage};

/// Identity of one completion, shared by every chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionMeta {
    pub id: String,
    pub created: u64,
    /// The model name exactly as the client sent it.
    pub model: String,
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
    }
}

fn non_negative(count: i32) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

pub fn to_chat_completion(output: &ConverseOutput, meta: &CompletionMeta) -> ChatCompletion {
    let text: String = match &output.output {
        Some(ConverseOutputMember::Message(message)) => message
            .content()
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect(),
        _ => String::new(),
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
                content: Some(text),
            },
            logprobs: None,
            finish_reason: finish_reason(&output.stop_reason),
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
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
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
                total_tokens: 105
            }
        );
        assert_eq!(usage(None), Usage::default());
        assert_eq!(usage(Some(&token_usage(-1, 2, None))).prompt_tokens, 0);
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
