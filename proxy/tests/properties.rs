//! Property tests of the gateway's input handling: request parsing and
//! translation to Converse, the ConverseStream -> SSE translation, and the
//! whole HTTP path in front of the Bedrock emulator.
//!
//! Each property runs `PROPTEST_CASES` cases (small by default, so the suite
//! stays fast) from a fixed seed unless `PROPTEST_RNG_SEED` is set; see
//! docs/fuzzing.md for long runs.

mod support;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStart,
    ContentBlockStartEvent, ContentBlockStopEvent, ConversationRole, ConverseStreamMetadataEvent,
    ConverseStreamOutput, MessageStartEvent, MessageStopEvent, ReasoningContentBlockDelta,
    StopReason, SystemContentBlock, TokenUsage, ToolUseBlockDelta, ToolUseBlockStart,
};
use bedrock_gateway_proxy::error::ApiError;
use bedrock_gateway_proxy::openai::ChatCompletionChunk;
use bedrock_gateway_proxy::routes::chat::sse_event;
use bedrock_gateway_proxy::translate::request::{
    ConverseInput, TranslationSettings, parse_chat_request, to_converse_input,
};
use bedrock_gateway_proxy::translate::response::CompletionMeta;
use bedrock_gateway_proxy::translate::stream::StreamTranslator;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestRunner};
use serde_json::{Map, Value, json};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 256;
/// The seed when `PROPTEST_RNG_SEED` is not set, so the suite is deterministic.
const DEFAULT_SEED: u64 = 0x0062_6564_726f_636b;

fn config_with_cases(default_cases: u32) -> ProptestConfig {
    // `ProptestConfig::default()` reads PROPTEST_CASES and PROPTEST_RNG_SEED.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    // A failure prints its shrunk input; it is kept as a named regression test
    // below rather than in a file the suite would write into the tree.
    config.failure_persistence = None;
    config
}

fn config() -> ProptestConfig {
    config_with_cases(DEFAULT_CASES)
}

// ---------------------------------------------------------------------------
// Generators of OpenAI chat requests
// ---------------------------------------------------------------------------

const MODELS: [&str; 9] = [
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-2-lite-v1:0",
    "openai.gpt-oss-20b-1:0",
    "meta.llama3-1-8b-instruct-v1:0",
    "mistral.mistral-large-2402-v1:0",
];

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" \n\t ".to_owned()),
        "[a-z]{1,8}( [a-z]{1,8}){0,4}",
        any::<String>(),
        "\\PC{0,40}",
    ]
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn image_url() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("data:image/png;base64,{PNG}")),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|bytes| format!("data:image/jpeg;base64,{}", base64_of(&bytes))),
        Just("data:image/bmp;base64,AAAA".to_owned()),
        Just("data:image/png;base64,!!!not base64".to_owned()),
        Just("data:image/png,plain".to_owned()),
        Just("http://169.254.169.254/latest/meta-data/".to_owned()),
        Just("https://example.com/cat.png".to_owned()),
        Just("file:///etc/passwd".to_owned()),
        any::<String>(),
    ]
}

fn content_part() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(|text| json!({"type": "text", "text": text})),
        2 => image_url().prop_map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
        1 => image_url().prop_map(|url| json!({"type": "image_url", "image_url": url})),
        1 => (
            prop_oneof![
                Just("application/pdf"),
                Just("text/plain"),
                Just("text/csv"),
                Just("application/x-unknown"),
            ],
            prop::collection::vec(any::<u8>(), 0..48),
            prop::option::of(any::<String>()),
        )
            .prop_map(|(media_type, bytes, filename)| {
                json!({"type": "file", "file": {
                    "file_data": format!("data:{media_type};base64,{}", base64_of(&bytes)),
                    "filename": filename,
                }})
            }),
        1 => Just(json!({"type": "file", "file": {"file_id": "file-123"}})),
        1 => Just(json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})),
        1 => text().prop_map(|text| json!({"type": "refusal", "refusal": text})),
        1 => Just(json!({"type": "text"})),
        1 => Just(json!({"type": "hologram", "data": 1})),
        1 => any_json(),
    ]
}

fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("get_weather".to_owned()),
        2 => Just("lookup".to_owned()),
        2 => "[a-zA-Z0-9_-]{1,64}",
        1 => Just(String::new()),
        1 => "[a-z]{65,70}",
        1 => any::<String>(),
    ]
}

fn arguments() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_owned()),
        Just(String::new()),
        Just("{\"city\": \"Paris\"}".to_owned()),
        Just("[1, 2".to_owned()),
        any_json().prop_map(|value| value.to_string()),
        any::<String>(),
    ]
}

fn tool_call() -> impl Strategy<Value = Value> {
    (text(), tool_name(), arguments()).prop_map(|(id, name, arguments)| {
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
    })
}

fn content() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        5 => text().prop_map(|text| Some(Value::String(text))),
        4 => prop::collection::vec(content_part(), 0..4).prop_map(|parts| Some(Value::Array(parts))),
        1 => any_json().prop_map(Some),
    ]
}

fn role() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(Some("user")),
        5 => Just(Some("assistant")),
        2 => Just(Some("system")),
        1 => Just(Some("developer")),
        3 => Just(Some("tool")),
        1 => Just(Some("function")),
        1 => Just(Some("moderator")),
        1 => Just(None),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    (
        role(),
        content(),
        prop::option::of(prop::collection::vec(tool_call(), 0..3)),
        prop::option::of(prop_oneof![Just("call_1".to_owned()), text()]),
    )
        .prop_map(|(role, content, tool_calls, tool_call_id)| {
            let mut message = Map::new();
            if let Some(role) = role {
                message.insert("role".into(), json!(role));
            }
            if let Some(content) = content {
                message.insert("content".into(), content);
            }
            if let Some(tool_calls) = tool_calls {
                message.insert("tool_calls".into(), json!(tool_calls));
            }
            if let Some(tool_call_id) = tool_call_id {
                message.insert("tool_call_id".into(), json!(tool_call_id));
            }
            Value::Object(message)
        })
}

fn schema() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
        Just(json!({"properties": {"n": {"type": "integer"}}})),
        Just(json!({})),
        Just(Value::Null),
        Just(json!([1, 2])),
        Just(json!("object")),
        any_json(),
    ]
}

fn tool() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => Just("function"), 1 => Just("retrieval")],
        tool_name(),
        prop::option::of(text()),
        prop::option::of(schema()),
    )
        .prop_map(|(kind, name, description, parameters)| {
            let mut function = Map::new();
            function.insert("name".into(), json!(name));
            if let Some(description) = description {
                function.insert("description".into(), json!(description));
            }
            if let Some(parameters) = parameters {
                function.insert("parameters".into(), parameters);
            }
            json!({"type": kind, "function": function})
        })
}

fn tool_choice() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("auto")),
        Just(json!("none")),
        Just(json!("required")),
        Just(json!("sometimes")),
        tool_name().prop_map(|name| json!({"type": "function", "function": {"name": name}})),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0.0f64..2.5).prop_map(|x| json!(x)),
        (0u64..70_000).prop_map(|x| json!(x)),
        any::<i64>().prop_map(|x| json!(x)),
        any::<u64>().prop_map(|x| json!(x)),
        any::<f64>().prop_map(|x| json!(x)),
        Just(json!(-0.5)),
        Just(json!(1e300)),
        Just(json!("1")),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|x| json!(x)),
        any::<f64>().prop_map(|x| json!(x)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn response_format() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "text"})),
        Just(json!({"type": "json_object"})),
        (tool_name(), prop::option::of(schema())).prop_map(|(name, schema)| {
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
        }),
        Just(json!({"type": "xml"})),
    ]
}

fn request_value() -> impl Strategy<Value = Value> {
    let core = (
        prop_oneof![
            8 => prop::sample::select(&MODELS[..]).prop_map(str::to_owned),
            1 => Just(String::new()),
            1 => any::<String>(),
        ],
        prop::collection::vec(message(), 0..7),
        prop::option::of(prop::collection::vec(tool(), 0..3)),
        prop::option::of(tool_choice()),
        prop::option::of(response_format()),
        any::<bool>(),
    );
    let sampling = (
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(prop_oneof![
            text().prop_map(Value::String),
            prop::collection::vec(text(), 0..3).prop_map(|stops| json!(stops)),
        ]),
        prop::option::of(0u32..3),
        prop::option::of(any::<bool>()),
    );
    let extras = (
        prop::option::of(prop::sample::select(
            &["none", "minimal", "low", "medium", "high", "extreme"][..],
        )),
        prop::option::of((prop::option::of(0u32..5000), any::<bool>()).prop_map(
            |(budget, enabled)| {
                json!({"type": if enabled { "enabled" } else { "disabled" }, "budget_tokens": budget})
            },
        )),
        prop::option::of(any::<String>()),
        prop::option::of(prop::collection::btree_map(any::<String>(), any_json(), 0..20)),
        prop::option::of(any::<bool>()),
    );
    (core, sampling, extras).prop_map(
        |(
            (model, messages, tools, tool_choice, response_format, stream),
            (max_tokens, max_completion_tokens, temperature, top_p, stop, n, logprobs),
            (reasoning_effort, thinking, user, metadata, prompt_caching),
        )| {
            let mut request = Map::new();
            request.insert("model".into(), json!(model));
            request.insert("messages".into(), json!(messages));
            request.insert("stream".into(), json!(stream));
            let optional = [
                ("tools", tools.map(|tools| json!(tools))),
                ("tool_choice", tool_choice),
                ("response_format", response_format),
                ("max_tokens", max_tokens),
                ("max_completion_tokens", max_completion_tokens),
                ("temperature", temperature),
                ("top_p", top_p),
                ("stop", stop),
                ("n", n.map(|n| json!(n))),
                ("logprobs", logprobs.map(Value::Bool)),
                (
                    "reasoning_effort",
                    reasoning_effort.map(|effort| json!(effort)),
                ),
                ("thinking", thinking),
                ("user", user.map(Value::String)),
                (
                    "metadata",
                    metadata.map(|metadata| Value::Object(metadata.into_iter().collect())),
                ),
                ("prompt_caching", prompt_caching.map(Value::Bool)),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    request.insert(name.into(), value);
                }
            }
            Value::Object(request)
        },
    )
}

// ---------------------------------------------------------------------------
// What a translation promises
// ---------------------------------------------------------------------------

/// Every refusal is a client error in OpenAI's shape, naming what was wrong.
fn check_refusal(error: &ApiError) -> Result<(), TestCaseError> {
    let status = error.status().as_u16();
    prop_assert!(
        (400..500).contains(&status),
        "a refusal must be a 4xx, got {status}: {error:?}"
    );
    let envelope = serde_json::to_value(error.envelope()).expect("envelope serialises");
    prop_assert_eq!(&envelope["error"]["type"], "invalid_request_error");
    prop_assert!(
        envelope["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.trim().is_empty())
    );
    Ok(())
}

fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn check_translation(input: &ConverseInput) -> Result<(), TestCaseError> {
    prop_assert!(!input.messages.is_empty(), "no messages");
    for pair in input.messages.windows(2) {
        prop_assert_ne!(pair[0].role(), pair[1].role(), "roles must alternate");
    }
    let tools_enabled = input.tool_config.is_some();
    for message in &input.messages {
        prop_assert!(
            matches!(
                message.role(),
                ConversationRole::User | ConversationRole::Assistant
            ),
            "unexpected role {:?}",
            message.role()
        );
        let content = message.content();
        prop_assert!(!content.is_empty(), "a message without content blocks");
        prop_assert!(
            !content
                .iter()
                .all(|block| matches!(block, ContentBlock::CachePoint(_))),
            "a message of cache points only"
        );
        for block in content {
            match block {
                ContentBlock::Text(text) => {
                    prop_assert!(!text.trim().is_empty(), "a blank text block")
                }
                ContentBlock::ToolUse(tool_use) => {
                    prop_assert!(tools_enabled, "toolUse without a toolConfig");
                    prop_assert_eq!(message.role(), &ConversationRole::Assistant);
                    prop_assert!(
                        tool_use.input().is_object(),
                        "toolUse input is not an object"
                    );
                    prop_assert!(!tool_use.tool_use_id().is_empty(), "toolUse without an id");
                }
                ContentBlock::ToolResult(result) => {
                    prop_assert!(tools_enabled, "toolResult without a toolConfig");
                    prop_assert_eq!(message.role(), &ConversationRole::User);
                    prop_assert!(!result.tool_use_id().is_empty());
                }
                ContentBlock::Image(image) => {
                    let bytes = image.source().and_then(|source| source.as_bytes().ok());
                    prop_assert!(bytes.is_some_and(|bytes| !bytes.as_ref().is_empty()));
                }
                ContentBlock::Document(document) => {
                    prop_assert!(!document.name().is_empty());
                    prop_assert!(
                        document
                            .name()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || " -()[]".contains(c))
                    );
                    prop_assert!(!document.name().contains("  "));
                }
                ContentBlock::CachePoint(_) => {}
                other => prop_assert!(false, "unexpected block {other:?}"),
            }
        }
    }
    for block in &input.system {
        match block {
            SystemContentBlock::Text(text) => prop_assert!(!text.trim().is_empty()),
            SystemContentBlock::CachePoint(_) => {}
            other => prop_assert!(false, "unexpected system block {other:?}"),
        }
    }
    if let Some(tool_config) = &input.tool_config {
        prop_assert!(!tool_config.tools().is_empty());
        let names: Vec<&str> = tool_config
            .tools()
            .iter()
            .filter_map(|tool| tool.as_tool_spec().ok())
            .map(|spec| spec.name())
            .collect();
        prop_assert_eq!(names.len(), tool_config.tools().len());
        for spec in tool_config
            .tools()
            .iter()
            .filter_map(|tool| tool.as_tool_spec().ok())
        {
            prop_assert!(
                is_valid_tool_name(spec.name()),
                "tool name {:?}",
                spec.name()
            );
            let schema = spec.input_schema().and_then(|schema| schema.as_json().ok());
            let schema_type = schema
                .and_then(|schema| schema.as_object())
                .and_then(|fields| fields.get("type"));
            prop_assert!(schema_type.is_some(), "tool schema without a type");
        }
        if let Some(specific) = tool_config
            .tool_choice()
            .and_then(|choice| choice.as_tool().ok())
        {
            prop_assert!(names.contains(&specific.name()));
        }
    }
    if let Some(response_tool) = &input.response_tool {
        let tool_config = input.tool_config.as_ref();
        prop_assert!(tool_config.is_some(), "a structured reply without its tool");
        prop_assert!(
            tool_config
                .map(|config| config.tools())
                .unwrap_or_default()
                .iter()
                .filter_map(|tool| tool.as_tool_spec().ok())
                .any(|spec| spec.name() == response_tool)
        );
    }
    if let Some(inference) = &input.inference {
        if let Some(max_tokens) = inference.max_tokens() {
            prop_assert!(max_tokens >= 1);
        }
        if let Some(temperature) = inference.temperature() {
            prop_assert!((0.0..=2.0).contains(&temperature));
        }
        if let Some(top_p) = inference.top_p() {
            prop_assert!((0.0..=1.0).contains(&top_p));
        }
        prop_assert!(
            inference
                .stop_sequences()
                .iter()
                .all(|stop| !stop.is_empty())
        );
    }
    if let Some(metadata) = &input.request_metadata {
        prop_assert!(!metadata.is_empty() && metadata.len() <= 16);
        let allowed = |c: char| {
            c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || ":_@$#=/+,-.".contains(c)
        };
        for (key, value) in metadata {
            prop_assert!((1..=256).contains(&key.chars().count()));
            prop_assert!(!key.trim().is_empty());
            prop_assert!(value.chars().count() <= 256);
            prop_assert!(key.chars().all(allowed) && value.chars().all(allowed));
        }
    }
    Ok(())
}

/// Parses and translates a body as the chat route does.
fn translate(body: &[u8], prompt_caching: bool) -> Result<(), TestCaseError> {
    let request = match parse_chat_request(body) {
        Ok(request) => request,
        Err(error) => return check_refusal(&error),
    };
    let settings = TranslationSettings { prompt_caching };
    match to_converse_input(&request, &request.model, &settings) {
        Ok(input) => check_translation(&input),
        Err(error) => check_refusal(&error),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_refused_as_client_errors(
        body in prop::collection::vec(any::<u8>(), 0..512),
        prompt_caching in any::<bool>(),
    ) {
        translate(&body, prompt_caching)?;
    }

    #[test]
    fn arbitrary_json_is_refused_as_client_errors(value in any_json()) {
        translate(value.to_string().as_bytes(), false)?;
        translate(json!({"model": "m", "messages": value}).to_string().as_bytes(), false)?;
    }

    #[test]
    fn generated_requests_translate_or_are_refused(
        request in request_value(),
        prompt_caching in any::<bool>(),
    ) {
        translate(request.to_string().as_bytes(), prompt_caching)?;
    }

    /// Requests with a valid user turn, so that most of them translate.
    #[test]
    fn mostly_valid_requests_translate_within_their_promises(
        request in request_value(),
        prompt_caching in any::<bool>(),
    ) {
        let mut request = request;
        if let Some(messages) = request["messages"].as_array_mut() {
            messages.push(json!({"role": "user", "content": "What is the weather?"}));
        }
        for field in ["temperature", "top_p", "n", "logprobs", "max_tokens", "max_completion_tokens"] {
            if let Some(fields) = request.as_object_mut() {
                fields.remove(field);
            }
        }
        translate(request.to_string().as_bytes(), prompt_caching)?;
    }

    #[test]
    fn corrupted_requests_are_refused_as_client_errors(
        request in request_value(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut body = request.to_string().into_bytes();
        for (position, byte) in flips {
            let at = position.index(body.len());
            body[at] = byte;
        }
        if truncate {
            body.truncate(cut.index(body.len() + 1));
        }
        translate(&body, false)?;
    }
}

// ---------------------------------------------------------------------------
// ConverseStream events -> chat.completion.chunk
// ---------------------------------------------------------------------------

const STREAM_TOOLS: [&str; 3] = ["get_weather", "json_response", "lookup"];

fn stop_reason() -> impl Strategy<Value = StopReason> {
    prop::sample::select(
        &[
            "end_turn",
            "tool_use",
            "max_tokens",
            "stop_sequence",
            "guardrail_intervened",
            "content_filtered",
            "model_context_window_exceeded",
            "something_new",
        ][..],
    )
    .prop_map(StopReason::from)
}

fn stream_event() -> impl Strategy<Value = ConverseStreamOutput> {
    let block = 0i32..4;
    prop_oneof![
        1 => Just(ConverseStreamOutput::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .expect("message start"),
        )),
        2 => (block.clone(), text(), prop::sample::select(&STREAM_TOOLS[..])).prop_map(|(index, id, name)| {
            ConverseStreamOutput::ContentBlockStart(
                ContentBlockStartEvent::builder()
                    .content_block_index(index)
                    .start(ContentBlockStart::ToolUse(
                        ToolUseBlockStart::builder()
                            .tool_use_id(id)
                            .name(name)
                            .build()
                            .expect("tool use start"),
                    ))
                    .build()
                    .expect("block start"),
            )
        }),
        6 => (block.clone(), text()).prop_map(|(index, text)| {
            delta(index, ContentBlockDelta::Text(text))
        }),
        2 => (block.clone(), text(), any::<bool>()).prop_map(|(index, text, signature)| {
            delta(
                index,
                ContentBlockDelta::ReasoningContent(if signature {
                    ReasoningContentBlockDelta::Signature(text)
                } else {
                    ReasoningContentBlockDelta::Text(text)
                }),
            )
        }),
        3 => (block.clone(), text()).prop_map(|(index, input)| {
            delta(
                index,
                ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder()
                        .input(input)
                        .build()
                        .expect("tool use delta"),
                ),
            )
        }),
        1 => block.prop_map(|index| {
            ConverseStreamOutput::ContentBlockStop(
                ContentBlockStopEvent::builder()
                    .content_block_index(index)
                    .build()
                    .expect("block stop"),
            )
        }),
        1 => stop_reason().prop_map(|reason| {
            ConverseStreamOutput::MessageStop(
                MessageStopEvent::builder()
                    .stop_reason(reason)
                    .build()
                    .expect("message stop"),
            )
        }),
        1 => (any::<i32>(), any::<i32>(), prop::option::of(any::<i32>())).prop_map(
            |(input, output, cached)| {
                ConverseStreamOutput::Metadata(
                    ConverseStreamMetadataEvent::builder()
                        .usage(
                            TokenUsage::builder()
                                .input_tokens(input)
                                .output_tokens(output)
                                .total_tokens(input.wrapping_add(output))
                                .set_cache_read_input_tokens(cached)
                                .build()
                                .expect("usage"),
                        )
                        .build(),
                )
            }
        ),
    ]
}

fn delta(index: i32, delta: ContentBlockDelta) -> ConverseStreamOutput {
    ConverseStreamOutput::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(index)
            .delta(delta)
            .build()
            .expect("block delta"),
    )
}

/// What the client should read as content and as tool calls: the events up to
/// the first `messageStop`, as the translator documents.
struct Expected {
    content: String,
    tool_calls: Vec<(String, String, String)>,
}

fn expected_from(events: &[ConverseStreamOutput], response_tool: Option<&str>) -> Expected {
    let mut content = String::new();
    let mut structured_blocks = Vec::new();
    let mut tool_blocks: Vec<(i32, usize)> = Vec::new();
    let mut tool_calls: Vec<(String, String, String)> = Vec::new();
    for event in events {
        match event {
            ConverseStreamOutput::MessageStop(_) => break,
            ConverseStreamOutput::ContentBlockStart(start) => {
                if let Some(ContentBlockStart::ToolUse(tool_use)) = start.start() {
                    let index = start.content_block_index();
                    if response_tool == Some(tool_use.name()) {
                        structured_blocks.push(index);
                    } else {
                        tool_blocks.retain(|(block, _)| *block != index);
                        tool_blocks.push((index, tool_calls.len()));
                        tool_calls.push((
                            tool_use.tool_use_id().to_owned(),
                            tool_use.name().to_owned(),
                            String::new(),
                        ));
                    }
                }
            }
            ConverseStreamOutput::ContentBlockDelta(event) => match event.delta() {
                Some(ContentBlockDelta::Text(text)) => content.push_str(text),
                Some(ContentBlockDelta::ToolUse(tool_delta)) => {
                    let index = event.content_block_index();
                    if structured_blocks.contains(&index) {
                        content.push_str(tool_delta.input());
                    } else if let Some((_, call)) =
                        tool_blocks.iter().find(|(block, _)| *block == index)
                    {
                        tool_calls[*call].2.push_str(tool_delta.input());
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    Expected {
        content,
        tool_calls,
    }
}

fn check_stream(
    events: &[ConverseStreamOutput],
    response_tool: Option<&str>,
    include_usage: bool,
) -> Result<(), TestCaseError> {
    let meta = CompletionMeta {
        id: "chatcmpl-property".into(),
        created: 1_700_000_000,
        model: "model-\u{1F600}\n\"x\"".into(),
        response_tool: response_tool.map(str::to_owned),
    };
    let mut translator = StreamTranslator::new(meta.clone(), include_usage);
    let mut chunks: Vec<ChatCompletionChunk> = Vec::new();
    for event in events {
        chunks.extend(translator.on_event(event));
    }
    chunks.extend(translator.finish());
    // Nothing is owed twice.
    prop_assert!(translator.finish().is_empty());

    // Every chunk is one well-formed SSE event carrying a JSON object.
    let mut values = Vec::new();
    for chunk in &chunks {
        let bytes = sse_event(chunk);
        let line = std::str::from_utf8(&bytes).expect("SSE is UTF-8");
        let json = line
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"));
        prop_assert!(
            json.is_some_and(|json| !json.contains('\n')),
            "bad SSE framing: {line:?}"
        );
        let value: Value = serde_json::from_str(json.unwrap_or_default()).expect("chunk is JSON");
        prop_assert_eq!(&value["object"], "chat.completion.chunk");
        prop_assert_eq!(&value["id"], meta.id.as_str());
        prop_assert_eq!(&value["model"], meta.model.as_str());
        prop_assert_eq!(&value["created"], meta.created);
        prop_assert_eq!(value.get("usage").is_some(), include_usage);
        values.push(value);
    }

    // The role comes first and once.
    prop_assert!(!values.is_empty());
    prop_assert_eq!(&values[0]["choices"][0]["delta"]["role"], "assistant");
    prop_assert_eq!(
        values
            .iter()
            .filter(|value| value["choices"][0]["delta"].get("role").is_some())
            .count(),
        1
    );

    // Exactly one finish reason, on the last chunk with a choice.
    let with_choices: Vec<&Value> = values
        .iter()
        .filter(|value| {
            value["choices"]
                .as_array()
                .is_some_and(|choices| !choices.is_empty())
        })
        .collect();
    let finishes: Vec<usize> = with_choices
        .iter()
        .enumerate()
        .filter(|(_, value)| !value["choices"][0]["finish_reason"].is_null())
        .map(|(index, _)| index)
        .collect();
    prop_assert_eq!(
        finishes.clone(),
        vec![with_choices.len() - 1],
        "finish must be last and once"
    );
    let finish_reason = with_choices[with_choices.len() - 1]["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    prop_assert!(
        ["stop", "length", "tool_calls", "content_filter"].contains(&finish_reason.as_str())
    );

    // The usage chunk, when asked for, is last and alone.
    let usage_chunks: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, value)| value["choices"].as_array().is_some_and(Vec::is_empty))
        .map(|(index, _)| index)
        .collect();
    if include_usage {
        prop_assert_eq!(usage_chunks, vec![values.len() - 1]);
        let usage = &values[values.len() - 1]["usage"];
        let prompt = usage["prompt_tokens"].as_u64();
        let completion = usage["completion_tokens"].as_u64();
        prop_assert!(prompt.is_some() && completion.is_some());
        prop_assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(prompt.unwrap_or_default() + completion.unwrap_or_default())
        );
        for value in &values[..values.len() - 1] {
            prop_assert!(value["usage"].is_null());
        }
    } else {
        prop_assert!(usage_chunks.is_empty());
    }

    // Content and tool calls are what Bedrock sent, in order.
    let expected = expected_from(events, response_tool);
    let content: String = values
        .iter()
        .filter_map(|value| value["choices"][0]["delta"]["content"].as_str())
        .collect();
    prop_assert_eq!(content, expected.content);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for value in &values {
        let Some(deltas) = value["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for call in deltas {
            let index = call["index"].as_u64().unwrap_or(u64::MAX) as usize;
            let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
            if index == calls.len() {
                prop_assert_eq!(&call["type"], "function", "a new call starts with its type");
                prop_assert!(call["id"].is_string() && call["function"]["name"].is_string());
                calls.push((
                    call["id"].as_str().unwrap_or_default().to_owned(),
                    call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments.to_owned(),
                ));
            } else {
                prop_assert!(index < calls.len(), "tool call index {index} skips ahead");
                prop_assert!(
                    call.get("id").is_none() && call["function"].get("name").is_none(),
                    "id and name are sent once per call"
                );
                calls[index].2.push_str(arguments);
            }
        }
    }
    if response_tool.is_some() {
        prop_assert!(
            calls
                .iter()
                .all(|(_, name, _)| Some(name.as_str()) != response_tool)
        );
    }
    prop_assert_eq!(&calls, &expected.tool_calls);
    if finish_reason == "tool_calls" {
        prop_assert!(
            !calls.is_empty(),
            "finish_reason tool_calls without a tool call"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_event_sequence_streams_well_formed_chunks(
        events in prop::collection::vec(stream_event(), 0..24),
        response_tool in prop::option::of(prop::sample::select(&STREAM_TOOLS[..])),
        include_usage in any::<bool>(),
    ) {
        check_stream(&events, response_tool, include_usage)?;
    }

    /// Bedrock's own order: start, blocks, stop, metadata, possibly cut short.
    #[test]
    fn ordered_event_sequences_stream_well_formed_chunks(
        body in prop::collection::vec(stream_event(), 0..16),
        stop in stop_reason(),
        cut in any::<prop::sample::Index>(),
        include_usage in any::<bool>(),
    ) {
        let mut events = vec![ConverseStreamOutput::MessageStart(
            MessageStartEvent::builder().role(ConversationRole::Assistant).build().expect("start"),
        )];
        events.extend(body.into_iter().filter(|event| !matches!(
            event,
            ConverseStreamOutput::MessageStart(_) | ConverseStreamOutput::MessageStop(_)
                | ConverseStreamOutput::Metadata(_)
        )));
        events.push(ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder().stop_reason(stop).build().expect("stop"),
        ));
        events.push(ConverseStreamOutput::Metadata(
            ConverseStreamMetadataEvent::builder()
                .usage(TokenUsage::builder().input_tokens(3).output_tokens(4).total_tokens(7)
                    .build().expect("usage"))
                .build(),
        ));
        events.truncate(cut.index(events.len() + 1));
        check_stream(&events, None, include_usage)?;
    }
}

// ---------------------------------------------------------------------------
// Regressions found by the properties above
// ---------------------------------------------------------------------------

fn tool_start(index: i32, id: &str) -> ConverseStreamOutput {
    ConverseStreamOutput::ContentBlockStart(
        ContentBlockStartEvent::builder()
            .content_block_index(index)
            .start(ContentBlockStart::ToolUse(
                ToolUseBlockStart::builder()
                    .tool_use_id(id)
                    .name("get_weather")
                    .build()
                    .expect("tool start"),
            ))
            .build()
            .expect("block start"),
    )
}

fn stop_event(reason: &str) -> ConverseStreamOutput {
    ConverseStreamOutput::MessageStop(
        MessageStopEvent::builder()
            .stop_reason(StopReason::from(reason))
            .build()
            .expect("stop"),
    )
}

#[test]
fn tool_calls_with_non_object_arguments_or_no_id_are_refused() {
    for (id, arguments, param) in [
        (
            "call_1",
            "[]",
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            "call_1",
            "7",
            "messages[1].tool_calls[0].function.arguments",
        ),
        ("", "{}", "messages[1].tool_calls[0].id"),
    ] {
        let body = json!({"model": MODELS[0], "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "thanks"}
        ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
        let request = parse_chat_request(body.to_string().as_bytes()).expect("parses");
        let error = to_converse_input(&request, MODELS[0], &TranslationSettings::default())
            .expect_err("refused");
        assert_eq!(error.envelope().error.param.as_deref(), Some(param));
        assert_eq!(error.status().as_u16(), 400);
    }
}

#[test]
fn content_after_message_stop_is_not_streamed_after_the_finish_chunk() {
    let events = [
        delta(0, ContentBlockDelta::Text("a".into())),
        stop_event("end_turn"),
        delta(0, ContentBlockDelta::Text("b".into())),
        tool_start(1, "late"),
    ];
    check_stream(&events, None, true).expect("well-formed stream");
}

#[test]
fn a_tool_block_started_twice_keeps_tool_call_indexes_dense() {
    let events = [
        tool_start(1, "first"),
        tool_start(1, "again"),
        tool_start(2, "third"),
        stop_event("tool_use"),
    ];
    check_stream(&events, None, false).expect("well-formed stream");
}

// ---------------------------------------------------------------------------
// The whole HTTP path, in front of the Bedrock emulator
// ---------------------------------------------------------------------------

const KEY: &str = "property-key";

/// Over HTTP every answer is a success or an OpenAI-shaped client error; the
/// requests the gateway lets through are ones Bedrock (here its emulator,
/// which validates like Bedrock) accepts or refuses as a client error.
#[test]
fn generated_requests_over_http_answer_success_or_client_errors() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (emulator, gateway) = runtime.block_on(async {
        let emulator = support::emulator().await;
        let gateway = support::gateway(
            &emulator,
            &[
                "--api-keys",
                KEY,
                "--workers",
                "2",
                // Image URLs are refused rather than fetched, so that no case
                // depends on the network (proxy/tests/image_urls.rs tests fetching).
                "--image-url-fetch=false",
            ],
        )
        .await;
        (emulator, gateway)
    });
    let url = format!("http://{}/v1/chat/completions", gateway.api_addr);
    let client = reqwest::Client::new();
    let mut runner = TestRunner::new(config_with_cases(DEFAULT_CASES / 4));
    let strategy = (request_value(), any::<bool>());
    let result = runner.run(&strategy, |(mut request, valid_turn)| {
        if valid_turn && let Some(messages) = request["messages"].as_array_mut() {
            messages.push(json!({"role": "user", "content": "Hello there"}));
        }
        let (status, body) = runtime.block_on(async {
            let response = client
                .post(&url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(request.to_string())
                .send()
                .await
                .expect("gateway answers");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        });
        prop_assert!(
            status == 200 || (400..500).contains(&status),
            "status {status} for {request}: {body}"
        );
        if status == 200 {
            if request["stream"] == json!(true) {
                prop_assert!(
                    body.ends_with("data: [DONE]\n\n"),
                    "stream not finished: {body}"
                );
                for event in body.split("\n\n").filter(|event| !event.is_empty()) {
                    let data = event.strip_prefix("data: ");
                    prop_assert!(data.is_some(), "bad SSE event {event:?}");
                    let data = data.unwrap_or_default();
                    if data != "[DONE]" {
                        let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
                        prop_assert!(chunk.get("error").is_none(), "stream error: {chunk}");
                    }
                }
            } else {
                let completion: Value = serde_json::from_str(&body).expect("completion JSON");
                prop_assert_eq!(&completion["object"], "chat.completion");
            }
        } else {
            let error: Value = serde_json::from_str(&body).expect("error JSON");
            prop_assert!(
                error["error"]["message"].is_string(),
                "not an OpenAI error: {body}"
            );
            prop_assert!(error["error"]["type"].is_string());
        }
        Ok(())
    });
    runtime.block_on(async {
        let _ = gateway.shutdown().await;
        emulator.stop().await;
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
