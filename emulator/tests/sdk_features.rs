//! Tools, reasoning, images and documents, prompt caching, guardrails and request metadata,
//! driven through the real AWS SDK for Rust (Converse and ConverseStream).

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput as ConverseResponse;
use aws_sdk_bedrockruntime::operation::converse::builders::ConverseFluentBuilder;
use aws_sdk_bedrockruntime::operation::converse_stream::builders::ConverseStreamFluentBuilder;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, CachePointBlock, CachePointType, ContentBlock,
    ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseOutput, ConverseStreamOutput,
    DocumentBlock, DocumentFormat, DocumentSource, GuardrailConfiguration,
    GuardrailStreamConfiguration, GuardrailStreamProcessingMode, GuardrailTrace, ImageBlock,
    ImageFormat, ImageSource, InferenceConfiguration, Message, ReasoningContentBlock,
    ReasoningContentBlockDelta, SpecificToolChoice, StopReason, SystemContentBlock, TokenUsage,
    Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
    ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const SONNET_37_PROFILE: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
const NOVA_2_PROFILE: &str = "us.amazon.nova-2-lite-v1:0";
const GPT_OSS: &str = "openai.gpt-oss-20b-1:0";

async fn start() -> (RunningEmulator, Client) {
    let config = EmulatorConfig::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let emulator = RunningEmulator::start(config.clone(), listener)
        .await
        .unwrap();
    let credentials = Credentials::new(
        config.access_key_id,
        config.secret_access_key,
        None,
        None,
        "emulator-test",
    );
    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    (emulator, Client::new(&sdk_config))
}

fn message(role: ConversationRole, blocks: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(role)
        .set_content(Some(blocks))
        .build()
        .unwrap()
}

fn user(text: &str) -> Message {
    message(
        ConversationRole::User,
        vec![ContentBlock::Text(text.into())],
    )
}

fn object(pairs: &[(&str, Document)]) -> Document {
    Document::Object(
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect(),
    )
}

fn string(text: &str) -> Document {
    Document::String(text.into())
}

fn tool(name: &str, properties: &[(&str, &str)]) -> Tool {
    let properties: Vec<(&str, Document)> = properties
        .iter()
        .map(|(property, kind)| (*property, object(&[("type", string(kind))])))
        .collect();
    let schema = object(&[
        ("type", string("object")),
        ("properties", object(&properties)),
    ]);
    Tool::ToolSpec(
        ToolSpecification::builder()
            .name(name)
            .description(format!("The {name} tool"))
            .input_schema(ToolInputSchema::Json(schema))
            .build()
            .unwrap(),
    )
}

fn tool_config(choice: ToolChoice) -> ToolConfiguration {
    ToolConfiguration::builder()
        .tools(tool(
            "get_weather",
            &[
                ("city", "string"),
                ("days", "integer"),
                ("metric", "boolean"),
            ],
        ))
        .tools(tool("get_time", &[("zone", "string")]))
        .tool_choice(choice)
        .build()
        .unwrap()
}

fn any_tool() -> ToolChoice {
    ToolChoice::Any(AnyToolChoice::builder().build())
}

fn auto_tool() -> ToolChoice {
    ToolChoice::Auto(AutoToolChoice::builder().build())
}

fn named_tool(name: &str) -> ToolChoice {
    ToolChoice::Tool(SpecificToolChoice::builder().name(name).build().unwrap())
}

fn weather_input() -> Document {
    object(&[
        ("city", string("city-value")),
        ("days", Document::Number(Number::PosInt(1))),
        ("metric", Document::Bool(true)),
    ])
}

fn blocks(output: &ConverseResponse) -> &[ContentBlock] {
    match output.output() {
        Some(ConverseOutput::Message(message)) => message.content(),
        other => panic!("no message in {other:?}"),
    }
}

fn text_of(output: &ConverseResponse) -> String {
    blocks(output)
        .iter()
        .filter_map(|block| block.as_text().ok())
        .cloned()
        .collect()
}

fn tool_uses(output: &ConverseResponse) -> Vec<&ToolUseBlock> {
    blocks(output)
        .iter()
        .filter_map(|block| block.as_tool_use().ok())
        .collect()
}

/// Everything a ConverseStream sent, reassembled per content block index.
#[derive(Debug, Default)]
struct Streamed {
    text: BTreeMap<i32, String>,
    reasoning: BTreeMap<i32, String>,
    signatures: BTreeMap<i32, String>,
    tool_starts: BTreeMap<i32, (String, String)>,
    tool_inputs: BTreeMap<i32, Vec<String>>,
    stops: Vec<i32>,
    stop_reason: Option<StopReason>,
    usage: Option<TokenUsage>,
}

impl Streamed {
    fn tool_input(&self, index: i32) -> serde_json::Value {
        serde_json::from_str(&self.tool_inputs[&index].concat()).unwrap()
    }
}

async fn stream(request: ConverseStreamFluentBuilder) -> Streamed {
    let mut output = request.send().await.unwrap();
    let mut streamed = Streamed::default();
    while let Some(event) = output.stream.recv().await.unwrap() {
        match event {
            ConverseStreamOutput::ContentBlockStart(start) => {
                if let Some(ContentBlockStart::ToolUse(tool_use)) = start.start() {
                    streamed.tool_starts.insert(
                        start.content_block_index(),
                        (
                            tool_use.tool_use_id().to_string(),
                            tool_use.name().to_string(),
                        ),
                    );
                }
            }
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                let index = delta.content_block_index();
                match delta.delta() {
                    Some(ContentBlockDelta::Text(text)) => {
                        streamed.text.entry(index).or_default().push_str(text)
                    }
                    Some(ContentBlockDelta::ReasoningContent(
                        ReasoningContentBlockDelta::Text(text),
                    )) => streamed.reasoning.entry(index).or_default().push_str(text),
                    Some(ContentBlockDelta::ReasoningContent(
                        ReasoningContentBlockDelta::Signature(signature),
                    )) => {
                        streamed.signatures.insert(index, signature.clone());
                    }
                    Some(ContentBlockDelta::ToolUse(tool_use)) => streamed
                        .tool_inputs
                        .entry(index)
                        .or_default()
                        .push(tool_use.input().to_string()),
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            ConverseStreamOutput::ContentBlockStop(stop) => {
                streamed.stops.push(stop.content_block_index())
            }
            ConverseStreamOutput::MessageStop(stop) => {
                streamed.stop_reason = Some(stop.stop_reason().clone())
            }
            ConverseStreamOutput::Metadata(metadata) => streamed.usage = metadata.usage().cloned(),
            _ => {}
        }
    }
    streamed
}

async fn validation_message(request: ConverseFluentBuilder) -> String {
    let error = request.send().await.unwrap_err();
    let service = error.into_service_error();
    assert_eq!(service.code(), Some("ValidationException"), "{service:?}");
    service.message().unwrap_or_default().to_string()
}

#[tokio::test]
async fn tool_calls_follow_the_tool_choice() {
    let (emulator, client) = start().await;

    let forced = client
        .converse()
        .model_id(SONNET)
        .messages(user("What is the weather?"))
        .tool_config(tool_config(any_tool()))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.stop_reason(), &StopReason::ToolUse);
    assert_eq!(blocks(&forced).len(), 1, "a forced call has no text");
    let call = tool_uses(&forced)[0];
    assert_eq!(call.name(), "get_weather");
    assert_eq!(call.input(), &weather_input());
    assert!(call.tool_use_id().starts_with("tooluse_0_"));

    let named = client
        .converse()
        .model_id(SONNET)
        .messages(user("What time is it?"))
        .tool_config(tool_config(named_tool("get_time")))
        .send()
        .await
        .unwrap();
    let call = tool_uses(&named)[0];
    assert_eq!(call.name(), "get_time");
    assert_eq!(call.input(), &object(&[("zone", string("zone-value"))]));

    let parallel = client
        .converse()
        .model_id(SONNET)
        .messages(user("Weather and time [[emu:tool-calls=2]]"))
        .tool_config(tool_config(auto_tool()))
        .send()
        .await
        .unwrap();
    assert_eq!(parallel.stop_reason(), &StopReason::ToolUse);
    assert_eq!(text_of(&parallel), "Echo: Weather and time");
    let names: Vec<&str> = tool_uses(&parallel)
        .iter()
        .map(|call| call.name())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);

    let answered = client
        .converse()
        .model_id(SONNET)
        .messages(user("Just chat"))
        .tool_config(tool_config(auto_tool()))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.stop_reason(), &StopReason::EndTurn);
    assert!(tool_uses(&answered).is_empty());
    emulator.stop().await;
}

#[tokio::test]
async fn tool_calls_stream_with_start_fragments_and_stop() {
    let (emulator, client) = start().await;
    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .messages(user("Weather and time [[emu:tool-calls=2]]"))
            .tool_config(tool_config(auto_tool())),
    )
    .await;
    assert_eq!(streamed.text[&0], "Echo: Weather and time");
    assert_eq!(streamed.tool_starts[&1].1, "get_weather");
    assert!(streamed.tool_starts[&1].0.starts_with("tooluse_0_"));
    assert_eq!(streamed.tool_starts[&2].1, "get_time");
    assert!(streamed.tool_inputs[&1].len() >= 2);
    assert!(streamed.tool_inputs[&2].len() >= 2);
    assert_eq!(
        streamed.tool_input(1),
        serde_json::json!({"city": "city-value", "days": 1, "metric": true})
    );
    assert_eq!(
        streamed.tool_input(2),
        serde_json::json!({"zone": "zone-value"})
    );
    assert_eq!(streamed.stops, [0, 1, 2]);
    assert_eq!(streamed.stop_reason, Some(StopReason::ToolUse));

    let forced = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .messages(user("weather"))
            .tool_config(tool_config(any_tool())),
    )
    .await;
    assert!(forced.text.is_empty());
    assert_eq!(forced.tool_starts[&0].1, "get_weather");
    assert_eq!(forced.stops, [0]);
    emulator.stop().await;
}

fn tool_loop(result_id: &str) -> Vec<Message> {
    let call = ToolUseBlock::builder()
        .tool_use_id("tooluse_0_abc")
        .name("get_weather")
        .input(weather_input())
        .build()
        .unwrap();
    let result = |id: &str, text: &str| {
        ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(id)
                .content(ToolResultContentBlock::Text(text.into()))
                .build()
                .unwrap(),
        )
    };
    vec![
        user("What is the weather?"),
        message(
            ConversationRole::Assistant,
            vec![ContentBlock::ToolUse(call)],
        ),
        message(
            ConversationRole::User,
            vec![result(result_id, "sunny"), result(result_id, "and warm")],
        ),
    ]
}

#[tokio::test]
async fn tool_results_are_echoed_and_validated() {
    let (emulator, client) = start().await;
    let answered = client
        .converse()
        .model_id(SONNET)
        .set_messages(Some(tool_loop("tooluse_0_abc")))
        .tool_config(tool_config(any_tool()))
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&answered), "Echo: sunny and warm");
    assert_eq!(answered.stop_reason(), &StopReason::EndTurn);

    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .set_messages(Some(tool_loop("tooluse_0_abc")))
            .tool_config(tool_config(auto_tool())),
    )
    .await;
    assert_eq!(streamed.text[&0], "Echo: sunny and warm");

    let unknown_id = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .set_messages(Some(tool_loop("tooluse_9_zzz")))
            .tool_config(tool_config(auto_tool())),
    )
    .await;
    assert!(unknown_id.contains("tooluse_9_zzz"), "{unknown_id}");
    let no_config = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .set_messages(Some(tool_loop("tooluse_0_abc"))),
    )
    .await;
    assert!(no_config.starts_with("The toolConfig field must be defined"));
    let unknown_tool = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .tool_config(tool_config(named_tool("nope"))),
    )
    .await;
    assert!(unknown_tool.contains("nope"));
    let empty = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .tool_config(
                ToolConfiguration::builder()
                    .set_tools(Some(Vec::new()))
                    .build()
                    .unwrap(),
            ),
    )
    .await;
    assert!(empty.contains("'toolConfig.tools'"));
    let bad_name = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .tool_config(
                ToolConfiguration::builder()
                    .tools(tool("get weather", &[]))
                    .build()
                    .unwrap(),
            ),
    )
    .await;
    assert!(bad_name.contains("toolSpec.name"));
    emulator.stop().await;
}

fn thinking(budget: u64) -> Document {
    object(&[(
        "thinking",
        object(&[
            ("type", string("enabled")),
            ("budget_tokens", Document::Number(Number::PosInt(budget))),
        ]),
    )])
}

#[tokio::test]
async fn claude_thinking_reasons_first() {
    let (emulator, client) = start().await;
    let output = client
        .converse()
        .model_id(SONNET_37_PROFILE)
        .messages(user("why is the sky blue"))
        .additional_model_request_fields(thinking(1024))
        .inference_config(InferenceConfiguration::builder().max_tokens(2048).build())
        .send()
        .await
        .unwrap();
    let Ok(ReasoningContentBlock::ReasoningText(reasoning)) =
        blocks(&output)[0].as_reasoning_content()
    else {
        panic!("reasoning first: {:?}", blocks(&output));
    };
    assert_eq!(reasoning.text(), "Thinking about: why is the sky blue");
    let signature = reasoning.signature().unwrap().to_string();
    assert!(!signature.is_empty());
    assert_eq!(text_of(&output), "Echo: why is the sky blue");

    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET_37_PROFILE)
            .messages(user("why is the sky blue"))
            .additional_model_request_fields(thinking(1024)),
    )
    .await;
    assert_eq!(
        streamed.reasoning[&0],
        "Thinking about: why is the sky blue"
    );
    assert_eq!(streamed.signatures[&0], signature);
    assert_eq!(streamed.text[&1], "Echo: why is the sky blue");
    assert_eq!(streamed.stops, [0, 1]);

    let old_model = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .additional_model_request_fields(thinking(1024)),
    )
    .await;
    assert!(old_model.contains("extraneous key [thinking] is not permitted"));
    let small_budget = validation_message(
        client
            .converse()
            .model_id(SONNET_37_PROFILE)
            .messages(user("x"))
            .additional_model_request_fields(thinking(512)),
    )
    .await;
    assert!(small_budget.contains("1024"));
    let tight = validation_message(
        client
            .converse()
            .model_id(SONNET_37_PROFILE)
            .messages(user("x"))
            .additional_model_request_fields(thinking(2048))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(2048)
                    .temperature(0.2)
                    .build(),
            ),
    )
    .await;
    assert!(tight.contains("max_tokens"));
    emulator.stop().await;
}

#[tokio::test]
async fn nova_2_and_gpt_oss_reason_too() {
    let (emulator, client) = start().await;
    let nova = client
        .converse()
        .model_id(NOVA_2_PROFILE)
        .messages(user("plan a trip"))
        .additional_model_request_fields(object(&[(
            "reasoningConfig",
            object(&[
                ("type", string("enabled")),
                ("maxReasoningEffort", string("low")),
            ]),
        )]))
        .send()
        .await
        .unwrap();
    assert!(blocks(&nova)[0].is_reasoning_content());
    assert_eq!(text_of(&nova), "Echo: plan a trip");

    let gpt = stream(
        client
            .converse_stream()
            .model_id(GPT_OSS)
            .messages(user("plan a trip"))
            .additional_model_request_fields(object(&[("reasoning_effort", string("high"))])),
    )
    .await;
    assert_eq!(gpt.reasoning[&0], "Thinking about: plan a trip");
    assert_eq!(gpt.text[&1], "Echo: plan a trip");

    let unknown = validation_message(
        client
            .converse()
            .model_id(GPT_OSS)
            .messages(user("x"))
            .additional_model_request_fields(object(&[("frobnicate", Document::Bool(true))])),
    )
    .await;
    assert!(unknown.contains("[frobnicate]"));
    emulator.stop().await;
}

fn image(format: ImageFormat, bytes: Vec<u8>) -> ContentBlock {
    ContentBlock::Image(
        ImageBlock::builder()
            .format(format)
            .source(ImageSource::Bytes(Blob::new(bytes)))
            .build()
            .unwrap(),
    )
}

fn document(name: &str, bytes: Vec<u8>) -> ContentBlock {
    ContentBlock::Document(
        DocumentBlock::builder()
            .format(DocumentFormat::Pdf)
            .name(name)
            .source(DocumentSource::Bytes(Blob::new(bytes)))
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn images_and_documents_are_checked_and_echoed() {
    let (emulator, client) = start().await;
    let attachments = || {
        message(
            ConversationRole::User,
            vec![
                ContentBlock::Text("Describe these".into()),
                image(ImageFormat::Png, vec![137, 80, 78, 71, 1, 2, 3]),
                document("Q3 report (final)", b"%PDF-1.7 tiny".to_vec()),
            ],
        )
    };
    let expected =
        "Echo: Describe these [image/png 7 bytes] [document Q3 report (final) pdf 13 bytes]";
    let output = client
        .converse()
        .model_id(SONNET)
        .messages(attachments())
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&output), expected);
    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .messages(attachments()),
    )
    .await;
    assert_eq!(streamed.text[&0], expected);

    let with = |block: ContentBlock| {
        client.converse().model_id(SONNET).messages(message(
            ConversationRole::User,
            vec![ContentBlock::Text("look".into()), block],
        ))
    };
    let too_large = validation_message(with(image(ImageFormat::Jpeg, vec![0; 3_932_161]))).await;
    assert!(too_large.contains("3.75 MB"), "{too_large}");
    let bad_name = validation_message(with(document("report.pdf", b"x".to_vec()))).await;
    assert!(bad_name.starts_with("The document file name can only contain"));
    let empty = validation_message(with(image(ImageFormat::Gif, Vec::new()))).await;
    assert!(empty.contains("image.source.bytes"), "{empty}");
    let mut many = vec![ContentBlock::Text("many".into())];
    many.extend((0..21).map(|_| image(ImageFormat::Webp, vec![1])));
    let too_many = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(message(ConversationRole::User, many)),
    )
    .await;
    assert!(too_many.contains("images"));
    emulator.stop().await;
}

fn cache_point() -> CachePointBlock {
    CachePointBlock::builder()
        .r#type(CachePointType::Default)
        .build()
        .unwrap()
}

#[tokio::test]
async fn cache_points_write_then_read() {
    let (emulator, client) = start().await;
    let cached_request = |question: &str| {
        client
            .converse()
            .model_id(SONNET)
            .system(SystemContentBlock::Text(
                "You answer questions about the manual.".into(),
            ))
            .system(SystemContentBlock::CachePoint(cache_point()))
            .messages(message(
                ConversationRole::User,
                vec![
                    ContentBlock::Text("The manual says many things".into()),
                    ContentBlock::CachePoint(cache_point()),
                    ContentBlock::Text(question.into()),
                ],
            ))
    };
    let first = cached_request("what now").send().await.unwrap();
    let usage = first.usage().unwrap();
    assert_eq!(usage.cache_write_input_tokens(), Some(11));
    assert_eq!(usage.cache_read_input_tokens(), Some(0));
    assert_eq!(usage.input_tokens(), 2);
    let second = cached_request("and then").send().await.unwrap();
    let usage = second.usage().unwrap();
    assert_eq!(usage.cache_read_input_tokens(), Some(11));
    assert_eq!(usage.cache_write_input_tokens(), Some(0));
    assert_eq!(usage.input_tokens(), 2);
    assert_eq!(usage.total_tokens(), 2 + 11 + usage.output_tokens());

    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .system(SystemContentBlock::Text(
                "You answer questions about the manual.".into(),
            ))
            .system(SystemContentBlock::CachePoint(cache_point()))
            .messages(user("streamed question")),
    )
    .await;
    let usage = streamed.usage.unwrap();
    assert_eq!(usage.cache_write_input_tokens(), Some(6));
    assert_eq!(usage.input_tokens(), 2);
    let plain = client
        .converse()
        .model_id(SONNET)
        .messages(user("no cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.usage().unwrap().cache_read_input_tokens(), None);
    emulator.stop().await;
}

#[tokio::test]
async fn guardrails_intervene_when_scripted() {
    let (emulator, client) = start().await;
    let guardrail = GuardrailConfiguration::builder()
        .guardrail_identifier("gr1abc")
        .guardrail_version("DRAFT")
        .trace(GuardrailTrace::Enabled)
        .build();
    let blocked = client
        .converse()
        .model_id(SONNET)
        .messages(user("forbidden [[emu:guardrail=intervene]]"))
        .guardrail_config(guardrail.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        text_of(&blocked),
        "Sorry, the model cannot answer this question."
    );
    assert_eq!(blocked.stop_reason(), &StopReason::GuardrailIntervened);
    let allowed = client
        .converse()
        .model_id(SONNET)
        .messages(user("fine"))
        .guardrail_config(guardrail)
        .send()
        .await
        .unwrap();
    assert_eq!(text_of(&allowed), "Echo: fine");

    let streamed = stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .messages(user("forbidden [[emu:guardrail=intervene]]"))
            .guardrail_config(
                GuardrailStreamConfiguration::builder()
                    .guardrail_identifier("arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1abc")
                    .guardrail_version("3")
                    .stream_processing_mode(GuardrailStreamProcessingMode::Async)
                    .build(),
            ),
    )
    .await;
    assert_eq!(
        streamed.text[&0],
        "Sorry, the model cannot answer this question."
    );
    assert_eq!(streamed.stop_reason, Some(StopReason::GuardrailIntervened));

    let bad_version = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .guardrail_config(
                GuardrailConfiguration::builder()
                    .guardrail_identifier("gr1abc")
                    .guardrail_version("latest")
                    .build(),
            ),
    )
    .await;
    assert!(bad_version.contains("guardrailConfig.guardrailVersion"));
    emulator.stop().await;
}

#[tokio::test]
async fn request_metadata_is_validated_and_observed() {
    let (emulator, client) = start().await;
    client
        .converse()
        .model_id(SONNET)
        .messages(user("x"))
        .request_metadata("user", "alice@example.com")
        .request_metadata("team", "blue team")
        .send()
        .await
        .unwrap();
    let expected: BTreeMap<String, String> = [("user", "alice@example.com"), ("team", "blue team")]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_eq!(
        emulator.observations().last_request_metadata,
        Some(expected)
    );
    stream(
        client
            .converse_stream()
            .model_id(SONNET)
            .messages(user("x"))
            .request_metadata("stream", "yes"),
    )
    .await;
    assert_eq!(
        emulator.observations().last_request_metadata,
        Some(BTreeMap::from([("stream".to_string(), "yes".to_string())]))
    );
    let observed: serde_json::Value = reqwest::get(format!(
        "{}/_emulator/observations",
        emulator.endpoint_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(observed["lastRequestMetadata"]["stream"], "yes");

    let bad = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .request_metadata("user", "<script>"),
    )
    .await;
    assert!(bad.contains("'requestMetadata'"));
    let too_many: HashMap<String, String> = (0..17)
        .map(|index| (format!("k{index}"), "v".to_string()))
        .collect();
    let bad = validation_message(
        client
            .converse()
            .model_id(SONNET)
            .messages(user("x"))
            .set_request_metadata(Some(too_many)),
    )
    .await;
    assert!(bad.contains("less than or equal to 16"));
    emulator.stop().await;
}
