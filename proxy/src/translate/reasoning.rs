//! `reasoning_effort` (and an explicit `thinking` budget) -> each model
//! family's own reasoning switch in `additionalModelRequestFields`.
//!
//! Open WebUI sends `reasoning_effort` to every model, so families without a
//! reasoning switch simply ignore it; an explicit `thinking` budget for such a
//! model is refused, because the client clearly expects it to take effect.

use aws_smithy_types::Document;
use serde_json::json;

use crate::error::ApiError;
use crate::openai::{ChatCompletionRequest, ReasoningEffort};
use crate::translate::request::Sampling;
use crate::translate::tools::json_to_document;

/// Claude's smallest thinking budget.
pub const MIN_THINKING_BUDGET: u32 = 1024;
/// Room left for the answer when the client set no max_tokens.
const DEFAULT_ANSWER_TOKENS: i32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningFamily {
    /// Claude 3.7 and Claude 4 and later: `thinking.budget_tokens`.
    ClaudeThinking,
    /// Amazon Nova 2: `reasoningConfig.maxReasoningEffort`.
    NovaReasoning,
    /// OpenAI gpt-oss: `reasoning_effort`.
    GptOss,
    None,
}

pub fn family_of(model_id: &str) -> ReasoningFamily {
    let id = model_id.to_ascii_lowercase();
    if id.contains("anthropic.claude") {
        let thinking = id.contains("claude-3-7")
            || [
                "sonnet-4", "opus-4", "haiku-4", "claude-4", "sonnet-5", "opus-5", "haiku-5",
            ]
            .iter()
            .any(|marker| id.contains(marker));
        return if thinking {
            ReasoningFamily::ClaudeThinking
        } else {
            ReasoningFamily::None
        };
    }
    if id.contains("amazon.nova-2") {
        return ReasoningFamily::NovaReasoning;
    }
    if id.contains("openai.gpt-oss") {
        return ReasoningFamily::GptOss;
    }
    ReasoningFamily::None
}

pub fn budget_for(effort: ReasoningEffort) -> Option<u32> {
    match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => Some(MIN_THINKING_BUDGET),
        ReasoningEffort::Medium => Some(4096),
        ReasoningEffort::High => Some(16384),
    }
}

fn effort_name(effort: ReasoningEffort) -> Option<&'static str> {
    match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal | ReasoningEffort::Low => Some("low"),
        ReasoningEffort::Medium => Some("medium"),
        ReasoningEffort::High => Some("high"),
    }
}

/// Builds the family's reasoning fields, adjusting sampling as reasoning
/// requires: the answer keeps its own token budget on top of the thinking
/// budget, and the sampling parameters thinking forbids are dropped.
/// Claude refuses thinking together with a forced tool choice, and in a tool
/// loop it wants every earlier assistant tool turn to start with its signed
/// thinking block, which OpenAI clients do not send back. In both cases
/// `reasoning_effort` is dropped (the request still does what it asks) and
/// an explicit `thinking` budget is refused with the reason.
pub fn thinking_blocked_by(
    request: &ChatCompletionRequest,
    forced_tool_choice: bool,
) -> Option<&'static str> {
    if forced_tool_choice {
        return Some("Claude cannot think while tool_choice forces a tool call");
    }
    let tool_history = request.messages.iter().any(|message| {
        message
            .tool_calls
            .as_ref()
            .is_some_and(|calls| !calls.is_empty())
    });
    tool_history.then_some(
        "Claude needs the signed thinking of earlier tool calls, which OpenAI clients do not send back",
    )
}

pub fn additional_fields(
    request: &ChatCompletionRequest,
    model_id: &str,
    sampling: &mut Sampling,
    forced_tool_choice: bool,
) -> Result<Option<Document>, ApiError> {
    let family = family_of(model_id);
    let blocked = (family == ReasoningFamily::ClaudeThinking)
        .then(|| thinking_blocked_by(request, forced_tool_choice))
        .flatten();
    let explicit_budget = match &request.thinking {
        Some(thinking) if thinking.kind.as_deref().unwrap_or("enabled") == "enabled" => {
            let budget = thinking.budget_tokens.ok_or_else(|| {
                ApiError::invalid(
                    "thinking.budget_tokens is required.",
                    Some("thinking.budget_tokens"),
                )
            })?;
            if budget < MIN_THINKING_BUDGET {
                return Err(ApiError::invalid(
                    format!("thinking.budget_tokens must be at least {MIN_THINKING_BUDGET}."),
                    Some("thinking.budget_tokens"),
                ));
            }
            if family != ReasoningFamily::ClaudeThinking {
                return Err(ApiError::invalid(
                    format!("The model '{model_id}' does not accept a thinking budget."),
                    Some("thinking"),
                ));
            }
            if let Some(reason) = blocked {
                return Err(ApiError::invalid(
                    format!("thinking cannot be enabled here: {reason}."),
                    Some("thinking"),
                ));
            }
            Some(budget)
        }
        _ => None,
    };
    let effort = request.reasoning_effort;
    let fields = match family {
        ReasoningFamily::ClaudeThinking if blocked.is_some() => return Ok(None),
        ReasoningFamily::ClaudeThinking => {
            let Some(budget) = explicit_budget.or_else(|| effort.and_then(budget_for)) else {
                return Ok(None);
            };
            let budget_i32 = i32::try_from(budget).unwrap_or(i32::MAX);
            let answer = sampling.max_tokens.unwrap_or(DEFAULT_ANSWER_TOKENS);
            sampling.max_tokens = Some(answer.saturating_add(budget_i32));
            sampling.temperature = None;
            sampling.top_p = None;
            json!({"thinking": {"type": "enabled", "budget_tokens": budget}})
        }
        ReasoningFamily::NovaReasoning => {
            let Some(level) = effort.and_then(effort_name) else {
                return Ok(None);
            };
            sampling.temperature = None;
            sampling.top_p = None;
            json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}})
        }
        ReasoningFamily::GptOss => {
            let Some(level) = effort.and_then(effort_name) else {
                return Ok(None);
            };
            json!({"reasoning_effort": level})
        }
        ReasoningFamily::None => return Ok(None),
    };
    Ok(Some(json_to_document(&fields)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn forced_tools_and_tool_loops_turn_claude_thinking_off() {
        let sonnet = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
        let plain = request(json!({"reasoning_effort": "low"}));
        assert!(
            additional_fields(&plain, sonnet, &mut sampling(None), true)
                .unwrap()
                .is_none()
        );
        let explicit = request(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}));
        assert!(additional_fields(&explicit, sonnet, &mut sampling(None), true).is_err());
        let mut looped = request(json!({"reasoning_effort": "low"}));
        looped.messages.push(
            serde_json::from_value(json!({"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}))
            .unwrap(),
        );
        let mut untouched = sampling(Some(10));
        assert!(
            additional_fields(&looped, sonnet, &mut untouched, false)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            untouched,
            sampling(Some(10)),
            "sampling stays as asked when thinking is off"
        );
        assert!(
            additional_fields(&plain, sonnet, &mut sampling(None), false)
                .unwrap()
                .is_some()
        );
    }

    use super::*;
    use crate::translate::tools::document_to_json;
    use serde_json::Value;

    fn request(extra: Value) -> ChatCompletionRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn sampling(max_tokens: Option<i32>) -> Sampling {
        Sampling {
            max_tokens,
            temperature: Some(0.2),
            top_p: Some(0.5),
            stop_sequences: Vec::new(),
        }
    }

    #[test]
    fn families_are_recognised_from_model_ids() {
        let cases = [
            (
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                ReasoningFamily::ClaudeThinking,
            ),
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                ReasoningFamily::ClaudeThinking,
            ),
            (
                "global.anthropic.claude-opus-4-1-20250805-v1:0",
                ReasoningFamily::ClaudeThinking,
            ),
            (
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                ReasoningFamily::None,
            ),
            (
                "anthropic.claude-3-haiku-20240307-v1:0",
                ReasoningFamily::None,
            ),
            ("us.amazon.nova-2-lite-v1:0", ReasoningFamily::NovaReasoning),
            ("amazon.nova-pro-v1:0", ReasoningFamily::None),
            ("openai.gpt-oss-120b-1:0", ReasoningFamily::GptOss),
            ("meta.llama3-1-8b-instruct-v1:0", ReasoningFamily::None),
        ];
        for (id, family) in cases {
            assert_eq!(family_of(id), family, "{id}");
        }
    }

    #[test]
    fn claude_effort_becomes_a_budget_on_top_of_the_answer() {
        let mut adjusted = sampling(Some(1000));
        let fields = additional_fields(
            &request(json!({"reasoning_effort": "medium"})),
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            &mut adjusted,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            document_to_json(&fields),
            json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
        );
        assert_eq!(adjusted.max_tokens, Some(5096));
        assert_eq!((adjusted.temperature, adjusted.top_p), (None, None));
    }

    #[test]
    fn an_explicit_budget_wins_and_is_checked() {
        let mut adjusted = sampling(None);
        let fields = additional_fields(
            &request(json!({"reasoning_effort": "low", "thinking": {"type": "enabled", "budget_tokens": 3000}})),
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            &mut adjusted, false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(document_to_json(&fields)["thinking"]["budget_tokens"], 3000);
        assert_eq!(adjusted.max_tokens, Some(3000 + DEFAULT_ANSWER_TOKENS));

        for (extra, model, param) in [
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 10}}),
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                "thinking.budget_tokens",
            ),
            (
                json!({"thinking": {"type": "enabled"}}),
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                "thinking.budget_tokens",
            ),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
                "amazon.nova-pro-v1:0",
                "thinking",
            ),
        ] {
            match additional_fields(&request(extra), model, &mut sampling(None), false) {
                Err(ApiError::InvalidRequest {
                    param: Some(found), ..
                }) => assert_eq!(found, param),
                other => panic!("expected a refusal naming {param}, got {other:?}"),
            }
        }
    }

    #[test]
    fn other_families_get_their_own_switch_or_nothing() {
        let mut adjusted = sampling(Some(100));
        let nova = additional_fields(
            &request(json!({"reasoning_effort": "high"})),
            "us.amazon.nova-2-lite-v1:0",
            &mut adjusted,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            document_to_json(&nova)["reasoningConfig"]["maxReasoningEffort"],
            "high"
        );
        assert_eq!(adjusted.temperature, None);
        assert_eq!(adjusted.max_tokens, Some(100));

        let oss = additional_fields(
            &request(json!({"reasoning_effort": "minimal"})),
            "openai.gpt-oss-20b-1:0",
            &mut sampling(None),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(document_to_json(&oss), json!({"reasoning_effort": "low"}));

        let mut untouched = sampling(Some(100));
        assert!(
            additional_fields(
                &request(json!({"reasoning_effort": "high"})),
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                &mut untouched,
                false
            )
            .unwrap()
            .is_none()
        );
        assert_eq!(untouched, sampling(Some(100)));
        assert!(
            additional_fields(
                &request(json!({"reasoning_effort": "none"})),
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                &mut sampling(None),
                false
            )
            .unwrap()
            .is_none()
        );
        assert!(
            additional_fields(
                &request(json!({})),
                "openai.gpt-oss-20b-1:0",
                &mut sampling(None),
                false
            )
            .unwrap()
            .is_none()
        );
    }
}
