//! OpenAI function tools <-> Converse `toolConfig`, `toolUse` and `toolResult`.

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, SpecificToolChoice, Tool, ToolChoice as BedrockToolChoice,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;

use crate::error::ApiError;
use crate::openai::{ToolChoice, ToolChoiceMode, ToolDefinition};

pub fn json_to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(flag) => Document::Bool(*flag),
        Value::Number(number) => Document::Number(if let Some(unsigned) = number.as_u64() {
            Number::PosInt(unsigned)
        } else if let Some(signed) = number.as_i64() {
            Number::NegInt(signed)
        } else {
            Number::Float(number.as_f64().unwrap_or_default())
        }),
        Value::String(text) => Document::String(text.clone()),
        Value::Array(items) => Document::Array(items.iter().map(json_to_document).collect()),
        Value::Object(fields) => Document::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), json_to_document(value)))
                .collect(),
        ),
    }
}

pub fn document_to_json(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(flag) => Value::Bool(*flag),
        Document::Number(Number::PosInt(unsigned)) => Value::from(*unsigned),
        Document::Number(Number::NegInt(signed)) => Value::from(*signed),
        Document::Number(Number::Float(float)) => {
            serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number)
        }
        Document::String(text) => Value::String(text.clone()),
        Document::Array(items) => Value::Array(items.iter().map(document_to_json).collect()),
        Document::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), document_to_json(value)))
                .collect(),
        ),
    }
}

/// Bedrock accepts tool names of 1-64 characters from `[a-zA-Z0-9_-]`.
fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn tool_specification(definition: &ToolDefinition, index: usize) -> Result<Tool, ApiError> {
    let param = format!("tools[{index}].function.name");
    if definition.kind != "function" {
        return Err(ApiError::invalid(
            format!(
                "Only function tools are supported, got '{}'.",
                definition.kind
            ),
            Some(&format!("tools[{index}].type")),
        ));
    }
    let name = &definition.function.name;
    if !is_valid_tool_name(name) {
        return Err(ApiError::invalid(
            format!("Tool name '{name}' must be 1-64 letters, digits, '_' or '-'."),
            Some(&param),
        ));
    }
    let schema = match &definition.function.parameters {
        // Bedrock's tool schemas must say they describe an object.
        Some(Value::Object(fields)) => {
            let mut fields = fields.clone();
            fields
                .entry("type")
                .or_insert_with(|| Value::String("object".to_owned()));
            Value::Object(fields)
        }
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(_) => {
            return Err(ApiError::invalid(
                "Tool parameters must be a JSON Schema object.",
                Some(&format!("tools[{index}].function.parameters")),
            ));
        }
    };
    let description = definition
        .function
        .description
        .as_deref()
        .map(str::trim)
        .filter(|description| !description.is_empty());
    ToolSpecification::builder()
        .name(name)
        .set_description(description.map(str::to_owned))
        .input_schema(ToolInputSchema::Json(json_to_document(&schema)))
        .build()
        .map(Tool::ToolSpec)
        .map_err(|error| ApiError::invalid(error.to_string(), Some(&param)))
}

/// The `toolConfig` for a request, or `None` when no tools are offered or the
/// client chose `none` (Bedrock has no "none"; the tools are then withheld).
pub fn tool_configuration(
    tools: &[ToolDefinition],
    choice: Option<&ToolChoice>,
) -> Result<Option<ToolConfiguration>, ApiError> {
    if tools.is_empty() || choice == Some(&ToolChoice::Mode(ToolChoiceMode::None)) {
        if let Some(ToolChoice::Named(named)) = choice {
            return Err(ApiError::invalid(
                format!(
                    "tool_choice names '{}' but no tools were given.",
                    named.function.name
                ),
                Some("tool_choice"),
            ));
        }
        return Ok(None);
    }
    let specifications = tools
        .iter()
        .enumerate()
        .map(|(index, tool)| tool_specification(tool, index))
        .collect::<Result<Vec<_>, _>>()?;
    let bedrock_choice = match choice {
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => {
            BedrockToolChoice::Auto(AutoToolChoice::builder().build())
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => {
            BedrockToolChoice::Any(AnyToolChoice::builder().build())
        }
        Some(ToolChoice::Named(named)) => {
            if !tools
                .iter()
                .any(|tool| tool.function.name == named.function.name)
            {
                return Err(ApiError::invalid(
                    format!(
                        "tool_choice names '{}', which is not among the tools.",
                        named.function.name
                    ),
                    Some("tool_choice"),
                ));
            }
            BedrockToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(&named.function.name)
                    .build()
                    .map_err(|error| ApiError::invalid(error.to_string(), Some("tool_choice")))?,
            )
        }
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => return Ok(None),
    };
    ToolConfiguration::builder()
        .set_tools(Some(specifications))
        .tool_choice(bedrock_choice)
        .build()
        .map(Some)
        .map_err(|error| ApiError::Internal(format!("building the tool configuration: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(value: Value) -> Vec<ToolDefinition> {
        serde_json::from_value(value).unwrap()
    }

    fn weather() -> Vec<ToolDefinition> {
        tools(json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "no-description"}}
        ]))
    }

    fn choice(value: Value) -> ToolChoice {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn json_and_documents_round_trip() {
        let value = json!({"a": [1, -2, 2.5, "x", true, null, {"b": {}}]});
        assert_eq!(document_to_json(&json_to_document(&value)), value);
    }

    #[test]
    fn tool_specs_carry_schema_and_optional_description() {
        let config = tool_configuration(&weather(), None).unwrap().unwrap();
        let specs: Vec<&ToolSpecification> = config
            .tools()
            .iter()
            .map(|tool| tool.as_tool_spec().unwrap())
            .collect();
        assert_eq!(specs[0].name(), "get_weather");
        assert_eq!(specs[0].description(), Some("Weather"));
        let schema = document_to_json(specs[0].input_schema().unwrap().as_json().unwrap());
        assert_eq!(schema["properties"]["city"]["type"], "string");
        assert_eq!(specs[1].description(), None);
        let schema = document_to_json(specs[1].input_schema().unwrap().as_json().unwrap());
        assert_eq!(schema, json!({"type": "object", "properties": {}}));
        assert!(config.tool_choice().unwrap().is_auto());
    }

    #[test]
    fn schemas_without_a_type_are_objects() {
        let config = tool_configuration(
            &tools(json!([
                {"type": "function", "function": {"name": "a", "parameters": {}}},
                {"type": "function", "function": {"name": "b", "parameters": {"properties": {"q": {"type": "string"}}}}}
            ])),
            None,
        )
        .unwrap()
        .unwrap();
        for tool in config.tools() {
            let schema = document_to_json(
                tool.as_tool_spec()
                    .unwrap()
                    .input_schema()
                    .unwrap()
                    .as_json()
                    .unwrap(),
            );
            assert_eq!(schema["type"], "object");
        }
    }

    #[test]
    fn tool_choices_map_to_bedrock() {
        let required = tool_configuration(&weather(), Some(&choice(json!("required"))))
            .unwrap()
            .unwrap();
        assert!(required.tool_choice().unwrap().is_any());
        let named = tool_configuration(
            &weather(),
            Some(&choice(
                json!({"type": "function", "function": {"name": "get_weather"}}),
            )),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            named.tool_choice().unwrap().as_tool().unwrap().name(),
            "get_weather"
        );
        assert!(
            tool_configuration(&weather(), Some(&choice(json!("none"))))
                .unwrap()
                .is_none()
        );
        assert!(
            tool_configuration(&[], Some(&choice(json!("auto"))))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_tools_are_refused_by_position() {
        let cases = [
            (
                json!([{"type": "function", "function": {"name": "bad name"}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": ""}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "ok"}}, {"type": "retrieval", "function": {"name": "x"}}]),
                "tools[1].type",
            ),
            (
                json!([{"type": "function", "function": {"name": "ok", "parameters": "nope"}}]),
                "tools[0].function.parameters",
            ),
        ];
        for (definitions, param) in cases {
            match tool_configuration(&tools(definitions), None) {
                Err(ApiError::InvalidRequest {
                    param: Some(found), ..
                }) => assert_eq!(found, param),
                other => panic!("expected a refusal naming {param}, got {other:?}"),
            }
        }
        let unknown = choice(json!({"type": "function", "function": {"name": "missing"}}));
        assert!(tool_configuration(&weather(), Some(&unknown)).is_err());
        assert!(tool_configuration(&[], Some(&unknown)).is_err());
    }
}
