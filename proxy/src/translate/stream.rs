//! Bedrock ConverseStream events -> OpenAI `chat.completion.chunk`s.
//!
//! OpenAI streams a role delta first, then content deltas, then one chunk
//! carrying `finish_reason`, then (when asked) a chunk with `choices: []` and
//! the usage, then `data: [DONE]`. Bedrock sends `metadata` (with the usage)
//! after `messageStop`, so the finish chunk is emitted on `messageStop` and the
//! usage chunk on `metadata` or at the end of the stream.

use std::collections::{HashMap, HashSet};

use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput, ReasoningContentBlockDelta,
};

use crate::openai::{
    ChatCompletionChunk, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta, Usage,
};
use crate::translate::response::{CompletionMeta, finish_reason, usage};

#[derive(Debug)]
pub struct StreamTranslator {
    meta: CompletionMeta,
    include_usage: bool,
    role_sent: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    usage_sent: bool,
    /// Converse content block index -> OpenAI tool call index.
    tool_indexes: HashMap<i32, u32>,
    /// The OpenAI index of the next tool call: indexes stay dense even when
    /// Bedrock starts a block index twice.
    next_tool_index: u32,
    /// Content block indexes of the structured-reply tool, streamed as content.
    structured_blocks: HashSet<i32>,
}

impl StreamTranslator {
    pub fn new(meta: CompletionMeta, include_usage: bool) -> Self {
        Self {
            meta,
            include_usage,
            role_sent: false,
            finish: None,
            usage: None,
            usage_sent: false,
            tool_indexes: HashMap::new(),
            next_tool_index: 0,
            structured_blocks: HashSet::new(),
        }
    }

    /// The usage Bedrock reported, once its metadata event arrived.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Chunks for one Bedrock event; many events produce none.
    pub fn on_event(&mut self, event: &ConverseStreamOutput) -> Vec<ChatCompletionChunk> {
        let mut chunks = Vec::new();
        if self.finish.is_some() && !matches!(event, ConverseStreamOutput::Metadata(_)) {
            // The finish chunk ends the choice: only the usage may follow it.
            return chunks;
        }
        match event {
            ConverseStreamOutput::MessageStart(_) => self.ensure_role(&mut chunks),
            ConverseStreamOutput::ContentBlockStart(start_event) => {
                if let Some(ContentBlockStart::ToolUse(tool_use)) = start_event.start() {
                    self.ensure_role(&mut chunks);
                    if self.meta.response_tool.as_deref() == Some(tool_use.name()) {
                        self.structured_blocks
                            .insert(start_event.content_block_index());
                        return chunks;
                    }
                    let index = self.next_tool_index;
                    self.next_tool_index = self.next_tool_index.saturating_add(1);
                    self.tool_indexes
                        .insert(start_event.content_block_index(), index);
                    chunks.push(self.tool_chunk(ToolCallDelta {
                        index,
                        id: Some(tool_use.tool_use_id().to_owned()),
                        kind: Some("function"),
                        function: FunctionCallDelta {
                            name: Some(tool_use.name().to_owned()),
                            arguments: String::new(),
                        },
                    }));
                }
            }
            ConverseStreamOutput::ContentBlockDelta(delta_event) => match delta_event.delta() {
                Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                    self.ensure_role(&mut chunks);
                    chunks.push(self.chunk(
                        Delta {
                            content: Some(text.clone()),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                Some(ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(
                    text,
                ))) if !text.is_empty() => {
                    self.ensure_role(&mut chunks);
                    chunks.push(self.chunk(
                        Delta {
                            reasoning_content: Some(text.clone()),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                Some(ContentBlockDelta::ToolUse(tool_delta))
                    if self
                        .structured_blocks
                        .contains(&delta_event.content_block_index()) =>
                {
                    chunks.push(self.chunk(
                        Delta {
                            content: Some(tool_delta.input().to_owned()),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                Some(ContentBlockDelta::ToolUse(tool_delta)) => {
                    if let Some(&index) = self.tool_indexes.get(&delta_event.content_block_index())
                    {
                        chunks.push(self.tool_chunk(ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: FunctionCallDelta {
                                name: None,
                                arguments: tool_delta.input().to_owned(),
                            },
                        }));
                    }
                }
                _ => {}
            },
            ConverseStreamOutput::MessageStop(stop) => {
                self.ensure_role(&mut chunks);
                let reason = match finish_reason(stop.stop_reason()) {
                    FinishReason::ToolCalls if self.next_tool_index == 0 => FinishReason::Stop,
                    other => other,
                };
                self.push_finish(&mut chunks, reason);
            }
            ConverseStreamOutput::Metadata(metadata) => {
                self.usage = Some(usage(metadata.usage()));
                self.push_usage(&mut chunks);
            }
            _ => {}
        }
        chunks
    }

    /// Chunks still owed when Bedrock closes the stream normally.
    pub fn finish(&mut self) -> Vec<ChatCompletionChunk> {
        let mut chunks = Vec::new();
        self.ensure_role(&mut chunks);
        self.push_finish(&mut chunks, FinishReason::Stop);
        self.push_usage(&mut chunks);
        chunks
    }

    fn ensure_role(&mut self, chunks: &mut Vec<ChatCompletionChunk>) {
        if !self.role_sent {
            self.role_sent = true;
            chunks.push(self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            ));
        }
    }

    fn push_finish(&mut self, chunks: &mut Vec<ChatCompletionChunk>, reason: FinishReason) {
        if self.finish.is_none() {
            self.finish = Some(reason);
            chunks.push(self.chunk(Delta::default(), Some(reason)));
        }
    }

    fn push_usage(&mut self, chunks: &mut Vec<ChatCompletionChunk>) {
        if !self.include_usage || self.usage_sent || self.finish.is_none() {
            return;
        }
        self.usage_sent = true;
        chunks.push(ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices: Vec::new(),
            usage: Some(Some(self.usage.unwrap_or_default())),
        });
    }

    fn tool_chunk(&self, tool_call: ToolCallDelta) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![tool_call]),
                ..Delta::default()
            },
            None,
        )
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: self.include_usage.then_some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDeltaEvent, ContentBlockStopEvent, ConversationRole,
        ConverseStreamMetadataEvent, MessageStartEvent, MessageStopEvent, StopReason, TokenUsage,
    };
    use serde_json::{Value, json};

    fn meta() -> CompletionMeta {
        CompletionMeta {
            id: "chatcmpl-s".into(),
            created: 9,
            model: "claude".into(),
            response_tool: None,
        }
    }

    fn start() -> ConverseStreamOutput {
        ConverseStreamOutput::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .unwrap(),
        )
    }

    fn text(text: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::Text(text.into()))
                .build()
                .unwrap(),
        )
    }

    fn block_stop() -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockStop(
            ContentBlockStopEvent::builder()
                .content_block_index(0)
                .build()
                .unwrap(),
        )
    }

    fn stop(reason: StopReason) -> ConverseStreamOutput {
        ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(reason)
                .build()
                .unwrap(),
        )
    }

    fn metadata(input: i32, output: i32) -> ConverseStreamOutput {
        ConverseStreamOutput::Metadata(
            ConverseStreamMetadataEvent::builder()
                .usage(
                    TokenUsage::builder()
                        .input_tokens(input)
                        .output_tokens(output)
                        .total_tokens(input + output)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
    }

    fn run(include_usage: bool, events: &[ConverseStreamOutput]) -> Vec<Value> {
        let mut translator = StreamTranslator::new(meta(), include_usage);
        let mut chunks: Vec<ChatCompletionChunk> = events
            .iter()
            .flat_map(|event| translator.on_event(event))
            .collect();
        chunks.extend(translator.finish());
        chunks
            .into_iter()
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect()
    }

    #[test]
    fn a_full_stream_matches_openai_chunk_for_chunk() {
        let chunks = run(
            false,
            &[
                start(),
                text("Hel"),
                text("lo"),
                block_stop(),
                stop(StopReason::EndTurn),
                metadata(3, 2),
            ],
        );
        let choice = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "claude",
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        assert_eq!(
            chunks,
            vec![
                choice(json!({"role": "assistant", "content": ""}), Value::Null),
                choice(json!({"content": "Hel"}), Value::Null),
                choice(json!({"content": "lo"}), Value::Null),
                choice(json!({}), json!("stop")),
            ]
        );
    }

    #[test]
    fn usage_is_streamed_last_with_empty_choices_when_asked() {
        let chunks = run(
            true,
            &[
                start(),
                text("a"),
                stop(StopReason::MaxTokens),
                metadata(4, 1),
            ],
        );
        assert_eq!(chunks.len(), 4);
        for chunk in &chunks[..3] {
            assert_eq!(chunk["usage"], Value::Null);
            assert!(chunk.as_object().unwrap().contains_key("usage"));
        }
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(
            chunks[3]["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5,
                   "prompt_tokens_details": {"cached_tokens": 0}})
        );
    }

    #[test]
    fn a_stream_cut_short_still_finishes_once() {
        let chunks = run(true, &[text("x")]);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "x");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"]["total_tokens"], 0);
        assert_eq!(chunks.len(), 4);
    }

    fn tool_start(block: i32, id: &str) -> ConverseStreamOutput {
        use aws_sdk_bedrockruntime::types::{ContentBlockStartEvent, ToolUseBlockStart};
        ConverseStreamOutput::ContentBlockStart(
            ContentBlockStartEvent::builder()
                .content_block_index(block)
                .start(ContentBlockStart::ToolUse(
                    ToolUseBlockStart::builder()
                        .tool_use_id(id)
                        .name("get_weather")
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    fn tool_input(block: i32, fragment: &str) -> ConverseStreamOutput {
        use aws_sdk_bedrockruntime::types::ToolUseBlockDelta;
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(block)
                .delta(ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder()
                        .input(fragment)
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn parallel_tool_calls_stream_like_openai() {
        let chunks = run(
            false,
            &[
                start(),
                text("Checking."),
                tool_start(1, "t1"),
                tool_input(1, "{\"city\":"),
                tool_start(2, "t2"),
                tool_input(1, "\"Paris\"}"),
                tool_input(2, "{\"city\":\"Rome\"}"),
                stop(StopReason::ToolUse),
            ],
        );
        let deltas: Vec<Value> = chunks
            .iter()
            .map(|chunk| chunk["choices"][0]["delta"].clone())
            .collect();
        assert_eq!(deltas[1], json!({"content": "Checking."}));
        assert_eq!(
            deltas[2],
            json!({"tool_calls": [{"index": 0, "id": "t1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            deltas[3],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})
        );
        assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[4]["tool_calls"][0]["id"], "t2");
        assert_eq!(
            deltas[5],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})
        );
        assert_eq!(
            deltas[6],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\":\"Rome\"}"}}]})
        );
        assert_eq!(chunks[7]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks.len(), 8);
    }

    #[test]
    fn a_structured_reply_streams_as_content() {
        let mut structured = meta();
        structured.response_tool = Some("get_weather".into());
        let mut translator = StreamTranslator::new(structured, false);
        let events = [
            start(),
            tool_start(0, "t"),
            tool_input(0, "{\"a\":"),
            tool_input(0, "1}"),
            stop(StopReason::ToolUse),
        ];
        let chunks: Vec<Value> = events
            .iter()
            .flat_map(|event| translator.on_event(event))
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect();
        let content: String = chunks
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "{\"a\":1}");
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk["choices"][0]["delta"].get("tool_calls").is_none())
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn reasoning_deltas_are_streamed_as_reasoning_content() {
        let thought = ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::ReasoningContent(
                    ReasoningContentBlockDelta::Text("hmm".into()),
                ))
                .build()
                .unwrap(),
        );
        let signature = ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::ReasoningContent(
                    ReasoningContentBlockDelta::Signature("sig".into()),
                ))
                .build()
                .unwrap(),
        );
        let chunks = run(false, &[start(), thought, signature, text("answer")]);
        assert_eq!(
            chunks[1]["choices"][0]["delta"],
            json!({"reasoning_content": "hmm"})
        );
        assert_eq!(
            chunks[2]["choices"][0]["delta"],
            json!({"content": "answer"})
        );
    }

    #[test]
    fn empty_deltas_and_unknown_events_produce_nothing() {
        let mut translator = StreamTranslator::new(meta(), false);
        assert_eq!(translator.on_event(&start()).len(), 1);
        assert!(translator.on_event(&text("")).is_empty());
        assert!(translator.on_event(&block_stop()).is_empty());
        assert_eq!(
            translator
                .on_event(&stop(StopReason::GuardrailIntervened))
                .len(),
            1
        );
        assert!(translator.on_event(&stop(StopReason::EndTurn)).is_empty());
        assert!(translator.on_event(&metadata(1, 1)).is_empty());
        assert_eq!(translator.usage().map(|usage| usage.total_tokens), Some(2));
        assert!(translator.finish().is_empty());
    }
}
