//! Tool use: `toolConfig` validation, the tool calls a reply makes, and `toolResult` echoes.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;

const MAX_TOOL_NAME_CHARS: usize = 64;
/// Largest `toolUse.input` fragment in a stream delta.
const MAX_INPUT_FRAGMENT_BYTES: usize = 12;

pub const TOOL_CONFIG_REQUIRED: &str =
    "The toolConfig field must be defined when using toolUse and toolResult content blocks.";

#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    /// The `inputSchema.json` document.
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Any,
    Tool(String),
}

impl ToolChoice {
    /// `any` and `tool` force the model to call a tool.
    pub fn is_forced(&self) -> bool {
        !matches!(self, ToolChoice::Auto)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolConfig {
    /// The `toolSpec` entries, in request order (cache points and system tools left out).
    pub tools: Vec<ToolSpec>,
    pub choice: ToolChoice,
}

/// One `toolUse` block of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
    /// `input` serialised, as streamed in `toolUse.input` deltas.
    pub input_json: String,
}

fn constraint(value: &str, path: &str, rule: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value {value} at '{path}' failed to satisfy constraint: {rule}"
    ))
}

fn not_null(path: &str) -> Error {
    constraint("null", path, "Member must not be null")
}

pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn tool_spec(spec: &Value, member: usize) -> Result<ToolSpec, Error> {
    let path = |field: &str| format!("toolConfig.tools.{member}.member.toolSpec.{field}");
    let name = match spec.get("name") {
        None | Some(Value::Null) => return Err(not_null(&path("name"))),
        Some(name) => name.as_str().unwrap_or_default(),
    };
    if !is_valid_tool_name(name) {
        return Err(constraint(
            &format!("'{name}'"),
            &path("name"),
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and have length between 1 and 64",
        ));
    }
    if let Some(description) = spec.get("description")
        && description.as_str().is_none_or(str::is_empty)
    {
        return Err(constraint(
            "''",
            &path("description"),
            "Member must have length greater than or equal to 1",
        ));
    }
    let schema = spec
        .get("inputSchema")
        .and_then(|input_schema| input_schema.get("json"))
        .ok_or_else(|| not_null(&path("inputSchema")))?;
    let schema_error = |detail: &str| {
        Error::validation(format!(
            "The model returned the following errors: tools.{}.custom.input_schema.type: {detail}",
            member - 1
        ))
    };
    match schema.get("type") {
        _ if !schema.is_object() => return Err(schema_error("Input should be 'object'")),
        None => return Err(schema_error("Field required")),
        Some(kind) if kind != "object" => return Err(schema_error("Input should be 'object'")),
        Some(_) => {}
    }
    Ok(ToolSpec {
        name: name.to_string(),
        schema: schema.clone(),
    })
}

fn tool_choice(choice: Option<&Value>, tools: &[ToolSpec]) -> Result<ToolChoice, Error> {
    let Some(choice) = choice.filter(|choice| !choice.is_null()) else {
        return Ok(ToolChoice::Auto);
    };
    let members = choice.as_object().map(Map::len).unwrap_or(0);
    if members != 1 {
        return Err(Error::validation(
            "Malformed input request: toolConfig.toolChoice must set exactly one of auto, any or tool.",
        ));
    }
    if choice.get("auto").is_some() {
        return Ok(ToolChoice::Auto);
    }
    if choice.get("any").is_some() {
        return Ok(ToolChoice::Any);
    }
    let Some(specific) = choice.get("tool") else {
        return Err(Error::validation(
            "Malformed input request: toolConfig.toolChoice must set exactly one of auto, any or tool.",
        ));
    };
    let name = specific
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| not_null("toolConfig.toolChoice.tool.name"))?;
    if !tools.iter().any(|tool| tool.name == name) {
        return Err(Error::validation(format!(
            "The tool {name} specified in toolConfig.toolChoice isn't defined in toolConfig.tools. Define the tool or choose another tool, and try again."
        )));
    }
    Ok(ToolChoice::Tool(name.to_string()))
}

/// Parses and validates a `toolConfig` member.
pub fn parse_config(config: &Value) -> Result<ToolConfig, Error> {
    let entries = match config.get("tools") {
        None | Some(Value::Null) => return Err(not_null("toolConfig.tools")),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(Error::validation(
                "Malformed input request: toolConfig.tools must be a list.",
            ));
        }
    };
    if entries.is_empty() {
        return Err(constraint(
            "'[]'",
            "toolConfig.tools",
            "Member must have length greater than or equal to 1",
        ));
    }
    let mut tools = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let member = index + 1;
        if let Some(spec) = entry.get("toolSpec") {
            let spec = tool_spec(spec, member)?;
            if tools.iter().any(|tool: &ToolSpec| tool.name == spec.name) {
                return Err(Error::validation(
                    "The model returned the following errors: tools: Tool names must be unique.",
                ));
            }
            tools.push(spec);
        } else if entry.get("cachePoint").is_none() && entry.get("systemTool").is_none() {
            return Err(Error::validation(format!(
                "Malformed input request: toolConfig.tools.{index} must set one of toolSpec, systemTool or cachePoint."
            )));
        }
    }
    let choice = tool_choice(config.get("toolChoice"), &tools)?;
    Ok(ToolConfig { tools, choice })
}

/// A value for one schema property: strings `"<property>-value"`, numbers 1, booleans true,
/// arrays `[]`, objects `{}`, anything else null.
fn example_value(property: &str, schema: &Value) -> Value {
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null"),
        _ => None,
    };
    match kind {
        Some("string") => Value::String(format!("{property}-value")),
        Some("integer" | "number") => Value::from(1),
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

/// The input a tool call carries: one entry per property of the schema.
pub fn example_input(schema: &Value) -> Value {
    let input = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| (name.clone(), example_value(name, property)))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(input)
}

/// `tooluse_<index>_<12 hex digits>`, the digits derived from `seed`, the index and the name.
pub fn tool_use_id(index: usize, name: &str, seed: &str) -> String {
    let digest = Sha256::digest(format!("{seed}\n{index}\n{name}").as_bytes());
    format!("tooluse_{index}_{}", &hex::encode(digest)[..12])
}

fn call(index: usize, spec: &ToolSpec, seed: &str) -> ToolCall {
    let input = example_input(&spec.schema);
    ToolCall {
        tool_use_id: tool_use_id(index, &spec.name, seed),
        name: spec.name.clone(),
        input_json: input.to_string(),
        input,
    }
}

/// The tool calls of a reply: `count` (from the `tool-calls` directive) calls of the first
/// tools, or of the named tool for a `tool` choice; without the directive, one call for `any`
/// (the first tool) and `tool`, none for `auto`.
pub fn planned_calls(
    config: &ToolConfig,
    count: Option<usize>,
    seed: &str,
) -> Result<Vec<ToolCall>, Error> {
    let available = config.tools.len();
    if let Some(count) = count
        && (count == 0 || count > available)
    {
        return Err(Error::validation(format!(
            "Emulator directive 'tool-calls' needs a number between 1 and the {available} tools in toolConfig.tools, got {count}."
        )));
    }
    let count = match (&config.choice, count) {
        (_, Some(count)) => count,
        (ToolChoice::Auto, None) => 0,
        (_, None) => 1,
    };
    let calls = match &config.choice {
        ToolChoice::Tool(name) => config
            .tools
            .iter()
            .find(|tool| &tool.name == name)
            .map(|spec| (0..count).map(|index| call(index, spec, seed)).collect())
            .unwrap_or_default(),
        _ => config
            .tools
            .iter()
            .take(count)
            .enumerate()
            .map(|(index, spec)| call(index, spec, seed))
            .collect(),
    };
    Ok(calls)
}

/// The text of the `toolResult` blocks in `content` (text as is, JSON serialised), joined with
/// single spaces; `None` when there are no tool results.
pub fn result_text(content: &[Value]) -> Option<String> {
    let results: Vec<&Value> = content
        .iter()
        .filter_map(|block| block.get("toolResult"))
        .collect();
    if results.is_empty() {
        return None;
    }
    let parts: Vec<String> = results
        .iter()
        .filter_map(|result| result.get("content").and_then(Value::as_array))
        .flatten()
        .filter_map(|part| match (part.get("text"), part.get("json")) {
            (Some(Value::String(text)), _) => Some(text.trim().to_string()),
            (_, Some(json)) => Some(json.to_string()),
            _ => None,
        })
        .filter(|part| !part.is_empty())
        .collect();
    Some(parts.join(" "))
}

fn tool_use_ids(content: &[Value]) -> Vec<&str> {
    content
        .iter()
        .filter_map(|block| block.get("toolUse"))
        .filter_map(|tool_use| tool_use.get("toolUseId").and_then(Value::as_str))
        .collect()
}

/// Checks the tool blocks of message `index`: they need a `toolConfig`, every `toolUse` names
/// its id, tool and input, and every `toolResult` answers a `toolUse` of `previous` (the
/// assistant turn before it).
pub fn check_message_blocks(
    index: usize,
    content: &[Value],
    previous: Option<&[Value]>,
    has_tool_config: bool,
) -> Result<(), Error> {
    let previous_ids = previous.map(tool_use_ids).unwrap_or_default();
    for (block_index, block) in content.iter().enumerate() {
        let path = |field: &str| {
            format!(
                "messages.{}.member.content.{}.member.{field}",
                index + 1,
                block_index + 1
            )
        };
        if let Some(tool_use) = block.get("toolUse") {
            if !has_tool_config {
                return Err(Error::validation(TOOL_CONFIG_REQUIRED));
            }
            for field in ["toolUseId", "name", "input"] {
                if tool_use.get(field).is_none_or(Value::is_null) {
                    return Err(not_null(&path(&format!("toolUse.{field}"))));
                }
            }
        }
        if let Some(tool_result) = block.get("toolResult") {
            if !has_tool_config {
                return Err(Error::validation(TOOL_CONFIG_REQUIRED));
            }
            let id = tool_result
                .get("toolUseId")
                .and_then(Value::as_str)
                .ok_or_else(|| not_null(&path("toolResult.toolUseId")))?;
            if !previous_ids.contains(&id) {
                return Err(Error::validation(format!(
                    "messages.{index}.content.{block_index}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )));
            }
        }
    }
    Ok(())
}

/// End of the `toolUse.input` fragment starting at `start`: at most 12 bytes, and at least two
/// fragments for every input.
pub fn input_fragment_end(input_json: &str, start: usize) -> Option<usize> {
    let length = input_json.len();
    if start >= length {
        return None;
    }
    let size = if length <= 2 * MAX_INPUT_FRAGMENT_BYTES {
        length.div_ceil(2)
    } else {
        MAX_INPUT_FRAGMENT_BYTES
    };
    let mut end = (start + size.max(1)).min(length);
    while !input_json.is_char_boundary(end) {
        end += 1;
    }
    Some(end)
}

/// Iterates the stream fragments of a tool input.
pub fn input_fragments(input_json: &str) -> impl Iterator<Item = &str> {
    let mut position = 0;
    std::iter::from_fn(move || {
        let end = input_fragment_end(input_json, position)?;
        let fragment = &input_json[position..end];
        position = end;
        Some(fragment)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather_config(choice: Value) -> Value {
        json!({
            "tools": [
                {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "metric": {"type": "boolean"},
                        "hours": {"type": "array"},
                        "options": {"type": "object"},
                        "scale": {"type": "number"},
                        "note": {"type": ["string", "null"]},
                        "anything": {}
                    }
                }}}},
                {"cachePoint": {"type": "default"}},
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}
            ],
            "toolChoice": choice
        })
    }

    fn refusal(config: Value) -> String {
        parse_config(&config).unwrap_err().as_service().1
    }

    #[test]
    fn parses_tools_and_choices() {
        let auto = parse_config(&weather_config(json!({"auto": {}}))).unwrap();
        assert_eq!(auto.tools.len(), 2);
        assert_eq!(auto.choice, ToolChoice::Auto);
        assert!(!auto.choice.is_forced());
        let any = parse_config(&weather_config(json!({"any": {}}))).unwrap();
        assert_eq!(any.choice, ToolChoice::Any);
        let named = parse_config(&weather_config(json!({"tool": {"name": "get_time"}}))).unwrap();
        assert_eq!(named.choice, ToolChoice::Tool("get_time".into()));
        assert!(named.choice.is_forced());
        let unset = parse_config(&weather_config(Value::Null)).unwrap();
        assert_eq!(unset.choice, ToolChoice::Auto);
    }

    #[test]
    fn refuses_bad_tool_configs() {
        assert!(refusal(json!({"tools": []})).contains("'toolConfig.tools'"));
        assert!(refusal(json!({})).contains("toolConfig.tools"));
        let bad_name =
            json!({"tools": [{"toolSpec": {"name": "get weather", "inputSchema": {"json": {}}}}]});
        assert!(refusal(bad_name).contains("'toolConfig.tools.1.member.toolSpec.name'"));
        let long_name =
            json!({"tools": [{"toolSpec": {"name": "x".repeat(65), "inputSchema": {"json": {}}}}]});
        assert!(refusal(long_name).contains("toolSpec.name"));
        let no_schema = json!({"tools": [{"toolSpec": {"name": "a"}}]});
        assert!(refusal(no_schema).contains("inputSchema"));
        let array_schema = json!({"tools": [{"toolSpec": {"name": "a", "inputSchema": {"json": {"type": "array"}}}}]});
        assert!(refusal(array_schema).contains("Input should be 'object'"));
        let empty_description = json!({"tools": [{"toolSpec": {"name": "a", "description": "", "inputSchema": {"json": {"type": "object"}}}}]});
        assert!(refusal(empty_description).contains("description"));
        let duplicate = json!({"tools": [
            {"toolSpec": {"name": "a", "inputSchema": {"json": {"type": "object"}}}},
            {"toolSpec": {"name": "a", "inputSchema": {"json": {"type": "object"}}}}
        ]});
        assert!(refusal(duplicate).contains("unique"));
        let unknown_choice = weather_config(json!({"tool": {"name": "nope"}}));
        assert!(
            refusal(unknown_choice).contains("The tool nope specified in toolConfig.toolChoice")
        );
        let two_choices = weather_config(json!({"auto": {}, "any": {}}));
        assert!(refusal(two_choices).contains("exactly one"));
        let odd_entry = json!({"tools": [{"function": {}}]});
        assert!(refusal(odd_entry).contains("toolSpec"));
    }

    #[test]
    fn inputs_fill_the_schema() {
        let config = parse_config(&weather_config(json!({"any": {}}))).unwrap();
        assert_eq!(
            example_input(&config.tools[0].schema),
            json!({
                "city": "city-value", "days": 1, "metric": true, "hours": [],
                "options": {}, "scale": 1, "note": "note-value", "anything": null
            })
        );
        assert_eq!(example_input(&config.tools[1].schema), json!({}));
    }

    #[test]
    fn calls_follow_the_choice_and_the_directive() {
        let names = |choice: Value, count: Option<usize>| -> Vec<String> {
            let config = parse_config(&weather_config(choice)).unwrap();
            planned_calls(&config, count, "seed")
                .unwrap()
                .into_iter()
                .map(|call| call.name)
                .collect()
        };
        assert!(names(json!({"auto": {}}), None).is_empty());
        assert_eq!(names(json!({"any": {}}), None), ["get_weather"]);
        assert_eq!(
            names(json!({"tool": {"name": "get_time"}}), None),
            ["get_time"]
        );
        assert_eq!(
            names(json!({"auto": {}}), Some(2)),
            ["get_weather", "get_time"]
        );
        assert_eq!(
            names(json!({"tool": {"name": "get_time"}}), Some(2)),
            ["get_time", "get_time"]
        );
        let config = parse_config(&weather_config(json!({"auto": {}}))).unwrap();
        for count in [0, 3] {
            let message = planned_calls(&config, Some(count), "seed")
                .unwrap_err()
                .as_service()
                .1;
            assert!(message.contains("'tool-calls'"), "{message}");
        }
    }

    #[test]
    fn tool_use_ids_are_deterministic_and_distinct() {
        let config = parse_config(&weather_config(json!({"auto": {}}))).unwrap();
        let calls = planned_calls(&config, Some(2), "seed").unwrap();
        assert!(calls[0].tool_use_id.starts_with("tooluse_0_"));
        assert!(calls[1].tool_use_id.starts_with("tooluse_1_"));
        assert_eq!(calls[0].tool_use_id.len(), "tooluse_0_".len() + 12);
        assert_eq!(planned_calls(&config, Some(2), "seed").unwrap(), calls);
        assert_ne!(
            planned_calls(&config, Some(2), "other").unwrap()[0].tool_use_id,
            calls[0].tool_use_id
        );
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].input_json).unwrap(),
            calls[0].input
        );
    }

    #[test]
    fn tool_results_are_joined() {
        let content = vec![
            json!({"toolResult": {"toolUseId": "a", "content": [{"text": " sunny "}, {"json": {"t": 20}}]}}),
            json!({"text": "thanks"}),
            json!({"toolResult": {"toolUseId": "b", "content": [{"text": "rainy"}], "status": "error"}}),
        ];
        assert_eq!(
            result_text(&content).as_deref(),
            Some(r#"sunny {"t":20} rainy"#)
        );
        assert_eq!(result_text(&[json!({"text": "hi"})]), None);
    }

    #[test]
    fn tool_blocks_are_checked() {
        let tool_use = json!({"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}});
        let result =
            |id: &str| json!({"toolResult": {"toolUseId": id, "content": [{"text": "x"}]}});
        let message = |result: Result<(), Error>| result.unwrap_err().as_service().1;
        assert_eq!(
            message(check_message_blocks(
                1,
                std::slice::from_ref(&tool_use),
                None,
                false
            )),
            TOOL_CONFIG_REQUIRED
        );
        assert_eq!(
            message(check_message_blocks(2, &[result("t1")], None, false)),
            TOOL_CONFIG_REQUIRED
        );
        assert!(check_message_blocks(1, std::slice::from_ref(&tool_use), None, true).is_ok());
        assert!(
            check_message_blocks(
                2,
                &[result("t1")],
                Some(std::slice::from_ref(&tool_use)),
                true
            )
            .is_ok()
        );
        let unknown = message(check_message_blocks(
            2,
            &[json!({"text": "a"}), result("t9")],
            Some(&[tool_use]),
            true,
        ));
        assert!(
            unknown.starts_with("messages.2.content.1: unexpected `tool_use_id`"),
            "{unknown}"
        );
        assert!(message(check_message_blocks(2, &[result("t1")], None, true)).contains("t1"));
        let incomplete = json!({"toolUse": {"toolUseId": "t1", "name": "f"}});
        assert!(
            message(check_message_blocks(0, &[incomplete], None, true))
                .contains("'messages.1.member.content.1.member.toolUse.input'")
        );
    }

    #[test]
    fn inputs_stream_in_at_least_two_fragments() {
        for input in [
            "{}",
            r#"{"a":1}"#,
            r#"{"city":"city-value","days":1,"x":"héllo"}"#,
        ] {
            let fragments: Vec<&str> = input_fragments(input).collect();
            assert!(fragments.len() >= 2, "{input}");
            assert!(fragments.iter().all(|fragment| !fragment.is_empty()));
            assert_eq!(fragments.concat(), input);
        }
        assert_eq!(input_fragments("{}").collect::<Vec<_>>(), ["{", "}"]);
        assert_eq!(input_fragment_end("{}", 2), None);
    }
}
