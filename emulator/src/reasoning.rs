//! `additionalModelRequestFields`: each model family's reasoning switch, validated like
//! Bedrock, and the deterministic reasoning block it produces.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::converse::Message;
use crate::error::Error;

/// Claude's smallest thinking budget.
pub const MIN_THINKING_BUDGET: u64 = 1024;
const EFFORT_LEVELS: [&str; 3] = ["low", "medium", "high"];

/// Which reasoning switch (and other additional fields) a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Claude 3.7 and Claude 4 or later: `thinking`, `top_k`.
    ClaudeThinking,
    /// Older Claude models: `top_k`.
    Claude,
    /// Amazon Nova 2: `reasoningConfig`.
    Nova2,
    /// OpenAI gpt-oss: `reasoning_effort`.
    GptOss,
    /// No additional fields.
    Other,
}

/// The `(major, minor)` version of a Claude model id such as
/// `anthropic.claude-3-7-sonnet-20250219-v1:0` or `anthropic.claude-sonnet-4-5-20250929-v1:0`.
fn claude_version(model_id: &str) -> Option<(u32, u32)> {
    let rest = model_id.strip_prefix("anthropic.claude-")?;
    let mut tokens = rest.split('-').skip_while(|token| {
        matches!(*token, "sonnet" | "opus" | "haiku" | "instant")
            || token.parse::<u32>().is_err() && !token.contains(':')
    });
    let major: u32 = tokens.next()?.parse().ok()?;
    let minor = tokens
        .next()
        .filter(|token| token.len() <= 2)
        .and_then(|token| token.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

pub fn model_kind(model_id: &str) -> ModelKind {
    if model_id.starts_with("anthropic.claude") {
        return match claude_version(model_id) {
            Some((major, minor)) if major >= 4 || (major == 3 && minor >= 7) => {
                ModelKind::ClaudeThinking
            }
            _ => ModelKind::Claude,
        };
    }
    if model_id.starts_with("amazon.nova-2") {
        return ModelKind::Nova2;
    }
    if model_id.starts_with("openai.gpt-oss") {
        return ModelKind::GptOss;
    }
    ModelKind::Other
}

fn accepted_keys(kind: ModelKind) -> &'static [&'static str] {
    match kind {
        ModelKind::ClaudeThinking => &["thinking", "top_k"],
        ModelKind::Claude => &["top_k"],
        ModelKind::Nova2 => &["reasoningConfig"],
        ModelKind::GptOss => &["reasoning_effort"],
        ModelKind::Other => &[],
    }
}

fn model_error(detail: &str) -> Error {
    Error::validation(format!("The model returned the following errors: {detail}"))
}

/// Sampling settings that reasoning constrains.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

/// The reasoning a request switched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reasoning {
    /// Claude extended thinking with this token budget.
    Thinking { budget_tokens: u64 },
    /// Nova 2 or gpt-oss reasoning at this effort level.
    Effort { level: String },
}

impl Reasoning {
    /// Claude refuses thinking together with a forced tool choice.
    pub fn forbids_forced_tool_choice(&self) -> bool {
        matches!(self, Reasoning::Thinking { .. })
    }
}

fn thinking(value: &Value, sampling: Sampling) -> Result<Option<Reasoning>, Error> {
    let kind = value.get("type").and_then(Value::as_str);
    match kind {
        Some("disabled") => return Ok(None),
        Some("enabled") => {}
        _ => {
            return Err(model_error(
                "thinking.type: Input tag does not match any of the expected tags: 'enabled', 'disabled'",
            ));
        }
    }
    let budget_tokens = value
        .get("budget_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| model_error("thinking.enabled.budget_tokens: Field required"))?;
    if budget_tokens < MIN_THINKING_BUDGET {
        return Err(model_error(&format!(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
        )));
    }
    if let Some(max_tokens) = sampling.max_tokens
        && u64::try_from(max_tokens).unwrap_or(0) <= budget_tokens
    {
        return Err(model_error(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size",
        ));
    }
    if sampling
        .temperature
        .is_some_and(|temperature| temperature != 1.0)
    {
        return Err(model_error(
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility",
        ));
    }
    if sampling.top_p.is_some() {
        return Err(model_error(
            "`top_p` must be unset when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility",
        ));
    }
    Ok(Some(Reasoning::Thinking { budget_tokens }))
}

fn effort_level(value: Option<&Value>, field: &str) -> Result<String, Error> {
    match value.and_then(Value::as_str) {
        Some(level) if EFFORT_LEVELS.contains(&level) => Ok(level.to_string()),
        _ => Err(Error::validation(format!(
            "Malformed input request: {field} must be one of: low, medium, high."
        ))),
    }
}

fn nova_reasoning_config(value: &Value) -> Result<Option<Reasoning>, Error> {
    match value.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let level = match value.get("maxReasoningEffort") {
                None => "medium".to_string(),
                Some(level) => effort_level(Some(level), "reasoningConfig.maxReasoningEffort")?,
            };
            Ok(Some(Reasoning::Effort { level }))
        }
        _ => Err(Error::validation(
            "Malformed input request: reasoningConfig.type must be one of: enabled, disabled.",
        )),
    }
}

fn top_k(value: &Value) -> Result<(), Error> {
    match value.as_u64() {
        Some(_) => Ok(()),
        None => Err(model_error("top_k: Input should be a valid integer")),
    }
}

/// Validates `additionalModelRequestFields` for `model_id` and returns the reasoning it
/// switches on, if any.
pub fn requested(
    fields: Option<&Value>,
    model_id: &str,
    sampling: Sampling,
) -> Result<Option<Reasoning>, Error> {
    let empty = Map::new();
    let fields = match fields {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(Error::validation(
                "Malformed input request: additionalModelRequestFields must be a JSON object.",
            ));
        }
    };
    let kind = model_kind(model_id);
    let accepted = accepted_keys(kind);
    if let Some(extraneous) = fields.keys().find(|key| !accepted.contains(&key.as_str())) {
        return Err(model_error(&format!(
            "extraneous key [{extraneous}] is not permitted"
        )));
    }
    let mut reasoning = None;
    for (key, value) in fields {
        match key.as_str() {
            "thinking" => reasoning = thinking(value, sampling)?,
            "reasoningConfig" => reasoning = nova_reasoning_config(value)?,
            "reasoning_effort" => {
                reasoning = Some(Reasoning::Effort {
                    level: effort_level(Some(value), "reasoning_effort")?,
                })
            }
            _ => top_k(value)?,
        }
    }
    Ok(reasoning)
}

/// With Claude thinking on, a tool loop must hand back the reasoning: when the last message
/// holds tool results, the assistant turn before it must start with a `reasoningContent` block.
pub fn check_tool_loop_keeps_thinking(messages: &[Message]) -> Result<(), Error> {
    let [.., assistant, last] = messages else {
        return Ok(());
    };
    let has = |message: &Message, member: &str| {
        message
            .content
            .iter()
            .flatten()
            .any(|block| block.get(member).is_some())
    };
    if last.role != "user" || !has(last, "toolResult") {
        return Ok(());
    }
    let first = assistant.content.as_deref().unwrap_or_default().first();
    if first.is_some_and(|block| block.get("reasoningContent").is_some()) {
        return Ok(());
    }
    let found = first
        .and_then(Value::as_object)
        .and_then(|block| block.keys().next())
        .map_or("nothing", |member| match member.as_str() {
            "toolUse" => "tool_use",
            "text" => "text",
            other => other,
        });
    Err(model_error(&format!(
        "messages.{}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
        messages.len() - 2
    )))
}

/// The reasoning text for a prompt: `Thinking about: <prompt>`.
pub fn reasoning_text(prompt: &str) -> String {
    format!("Thinking about: {}", prompt.trim())
        .trim_end()
        .to_string()
}

/// A deterministic signature over the reasoning text.
pub fn signature(text: &str) -> String {
    let digest = Sha256::digest(format!("bedrock-emulator reasoning\n{text}").as_bytes());
    hex::encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SONNET_37: &str = "anthropic.claude-3-7-sonnet-20250219-v1:0";
    const SONNET_35: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

    fn refusal(fields: Value, model_id: &str, sampling: Sampling) -> String {
        requested(Some(&fields), model_id, sampling)
            .unwrap_err()
            .as_service()
            .1
    }

    #[test]
    fn classifies_model_ids() {
        for (id, kind) in [
            (SONNET_37, ModelKind::ClaudeThinking),
            (
                "anthropic.claude-sonnet-4-20250514-v1:0",
                ModelKind::ClaudeThinking,
            ),
            (
                "anthropic.claude-opus-4-1-20250805-v1:0",
                ModelKind::ClaudeThinking,
            ),
            (
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                ModelKind::ClaudeThinking,
            ),
            (SONNET_35, ModelKind::Claude),
            ("anthropic.claude-3-haiku-20240307-v1:0", ModelKind::Claude),
            ("anthropic.claude-v2:1", ModelKind::Claude),
            ("amazon.nova-2-lite-v1:0", ModelKind::Nova2),
            ("amazon.nova-lite-v1:0", ModelKind::Other),
            ("openai.gpt-oss-20b-1:0", ModelKind::GptOss),
            ("meta.llama3-1-8b-instruct-v1:0", ModelKind::Other),
        ] {
            assert_eq!(model_kind(id), kind, "{id}");
        }
    }

    #[test]
    fn claude_thinking_is_validated() {
        let thinking = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
        let sampling = Sampling {
            max_tokens: Some(4096),
            temperature: Some(1.0),
            top_p: None,
        };
        assert_eq!(
            requested(Some(&thinking), SONNET_37, sampling).unwrap(),
            Some(Reasoning::Thinking {
                budget_tokens: 2048
            })
        );
        assert_eq!(
            requested(Some(&thinking), SONNET_37, Sampling::default()).unwrap(),
            Some(Reasoning::Thinking {
                budget_tokens: 2048
            })
        );
        let low = json!({"thinking": {"type": "enabled", "budget_tokens": 1023}});
        assert!(
            refusal(low, SONNET_37, Sampling::default()).contains("greater than or equal to 1024")
        );
        let tight = Sampling {
            max_tokens: Some(2048),
            ..Sampling::default()
        };
        assert!(
            refusal(thinking.clone(), SONNET_37, tight).contains("`max_tokens` must be greater")
        );
        let warm = Sampling {
            temperature: Some(0.5),
            ..Sampling::default()
        };
        assert!(refusal(thinking.clone(), SONNET_37, warm).contains("`temperature`"));
        let top_p = Sampling {
            top_p: Some(0.9),
            ..Sampling::default()
        };
        assert!(refusal(thinking.clone(), SONNET_37, top_p).contains("`top_p`"));
        let untyped = json!({"thinking": {"budget_tokens": 2048}});
        assert!(refusal(untyped, SONNET_37, Sampling::default()).contains("thinking.type"));
        let disabled = json!({"thinking": {"type": "disabled"}});
        assert_eq!(
            requested(Some(&disabled), SONNET_37, Sampling::default()).unwrap(),
            None
        );
    }

    #[test]
    fn thinking_is_extraneous_for_older_models() {
        let thinking = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
        assert_eq!(
            refusal(thinking, SONNET_35, Sampling::default()),
            "The model returned the following errors: extraneous key [thinking] is not permitted"
        );
        assert!(
            requested(Some(&json!({"top_k": 5})), SONNET_35, Sampling::default())
                .unwrap()
                .is_none()
        );
        assert!(
            refusal(
                json!({"top_k": 5}),
                "amazon.nova-lite-v1:0",
                Sampling::default()
            )
            .contains("[top_k]")
        );
        assert!(refusal(json!({"top_k": "x"}), SONNET_35, Sampling::default()).contains("top_k"));
        assert!(
            refusal(json!({"frobnicate": 1}), SONNET_37, Sampling::default())
                .contains("[frobnicate]")
        );
        assert!(
            requested(Some(&json!([])), SONNET_37, Sampling::default())
                .unwrap_err()
                .as_service()
                .1
                .contains("JSON object")
        );
    }

    #[test]
    fn nova_and_gpt_oss_reasoning() {
        let nova = json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}});
        assert_eq!(
            requested(Some(&nova), "amazon.nova-2-lite-v1:0", Sampling::default()).unwrap(),
            Some(Reasoning::Effort {
                level: "high".into()
            })
        );
        let bad = json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "max"}});
        assert!(
            refusal(bad, "amazon.nova-2-lite-v1:0", Sampling::default())
                .contains("low, medium, high")
        );
        let off = json!({"reasoningConfig": {"type": "disabled"}});
        assert_eq!(
            requested(Some(&off), "amazon.nova-2-lite-v1:0", Sampling::default()).unwrap(),
            None
        );
        let gpt = json!({"reasoning_effort": "low"});
        assert_eq!(
            requested(Some(&gpt), "openai.gpt-oss-20b-1:0", Sampling::default()).unwrap(),
            Some(Reasoning::Effort {
                level: "low".into()
            })
        );
        assert!(
            refusal(
                json!({"reasoning_effort": "huge"}),
                "openai.gpt-oss-20b-1:0",
                Sampling::default()
            )
            .contains("reasoning_effort")
        );
        assert!(refusal(gpt, SONNET_37, Sampling::default()).contains("[reasoning_effort]"));
    }

    fn messages(value: Value) -> Vec<Message> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn thinking_tool_loops_must_hand_back_the_reasoning() {
        let tool_use = json!({"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}});
        let result = json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}});
        let reasoning =
            json!({"reasoningContent": {"reasoningText": {"text": "hm", "signature": "s"}}});
        let without = messages(json!([
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": [result]}
        ]));
        let message = check_tool_loop_keeps_thinking(&without)
            .unwrap_err()
            .as_service()
            .1;
        assert!(
            message.contains("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
            "{message}"
        );
        let with = messages(json!([
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "assistant", "content": [reasoning, tool_use]},
            {"role": "user", "content": [result]}
        ]));
        assert!(check_tool_loop_keeps_thinking(&with).is_ok());
        let plain = messages(json!([
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "assistant", "content": [{"text": "a"}]},
            {"role": "user", "content": [{"text": "b"}]}
        ]));
        assert!(check_tool_loop_keeps_thinking(&plain).is_ok());
        assert!(check_tool_loop_keeps_thinking(&plain[..1]).is_ok());
    }

    #[test]
    fn reasoning_text_and_signature_are_deterministic() {
        assert_eq!(reasoning_text(" hi there "), "Thinking about: hi there");
        assert_eq!(reasoning_text(""), "Thinking about:");
        assert_eq!(signature("a"), signature("a"));
        assert_ne!(signature("a"), signature("b"));
        assert_eq!(signature("a").len(), 64);
    }
}
