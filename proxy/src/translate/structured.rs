//! `response_format` (`json_object`, `json_schema`) through forced tool use,
//! the mechanism Converse offers every tool-capable model: the schema becomes
//! the input schema of a tool the model must call, and the tool's input is
//! returned as the message content, as OpenAI returns structured output.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::openai::{FunctionDefinition, ResponseFormat, ToolDefinition};

/// Name of the tool that carries a `json_object` reply.
pub const JSON_OBJECT_TOOL: &str = "json_response";

/// The tool that carries the structured reply, or `None` for plain text.
pub fn response_tool(format: Option<&ResponseFormat>) -> Result<Option<ToolDefinition>, ApiError> {
    let (name, description, schema) = match format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        Some(ResponseFormat::JsonObject) => (
            JSON_OBJECT_TOOL.to_owned(),
            "Reply with a JSON object as this tool's input.".to_owned(),
            json!({"type": "object"}),
        ),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = match &json_schema.schema {
                Some(schema @ Value::Object(_)) => schema.clone(),
                None => json!({"type": "object"}),
                Some(_) => {
                    return Err(ApiError::invalid(
                        "response_format.json_schema.schema must be a JSON Schema object.",
                        Some("response_format.json_schema.schema"),
                    ));
                }
            };
            (
                json_schema.name.clone(),
                json_schema.description.clone().unwrap_or_else(|| {
                    "Reply with the structured answer as this tool's input.".to_owned()
                }),
                schema,
            )
        }
    };
    Ok(Some(ToolDefinition {
        kind: "function".to_owned(),
        function: FunctionDefinition {
            name,
            description: Some(description),
            parameters: Some(schema),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(value: Value) -> ResponseFormat {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn formats_become_a_tool_or_nothing() {
        assert!(response_tool(None).unwrap().is_none());
        assert!(
            response_tool(Some(&format(json!({"type": "text"}))))
                .unwrap()
                .is_none()
        );
        let object = response_tool(Some(&format(json!({"type": "json_object"}))))
            .unwrap()
            .unwrap();
        assert_eq!(object.function.name, JSON_OBJECT_TOOL);
        assert_eq!(object.function.parameters, Some(json!({"type": "object"})));
        let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
        let named = response_tool(Some(&format(json!({"type": "json_schema",
            "json_schema": {"name": "verdict", "schema": schema.clone(), "strict": true}}))))
        .unwrap()
        .unwrap();
        assert_eq!(named.function.name, "verdict");
        assert_eq!(named.function.parameters, Some(schema));
    }

    #[test]
    fn a_schema_that_is_not_an_object_is_refused() {
        let error = response_tool(Some(&format(
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}),
        )))
        .unwrap_err();
        assert_eq!(
            error.envelope().error.param.as_deref(),
            Some("response_format.json_schema.schema")
        );
    }
}
