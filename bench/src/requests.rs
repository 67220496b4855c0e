//! The requests the benchmark replays: built (and, for the emulator, signed) once, then
//! cloned for every send.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use serde_json::json;

use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};
use crate::signing::AwsSigner;

/// A ready-to-send `POST`.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl PreparedRequest {
    pub fn to_http(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    #[cfg(test)]
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Whether a request asks for a single reply or a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Unary,
    Streamed,
}

fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(hyper::http::Error::from)?;
        let value = HeaderValue::from_str(value).map_err(hyper::http::Error::from)?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn origin_form(path: &str) -> Result<Uri> {
    path.parse::<Uri>()
        .map_err(|error| BenchError::Request(error.into()))
}

/// What a request carries besides its prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The prompt alone.
    Text,
    /// The prompt, a small png and a few tool definitions.
    ToolsAndImage,
}

/// A 1x1 png, the image of the `ToolsAndImage` requests.
pub const MIX_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Name, description and properties of the tools of the `ToolsAndImage` requests.
const MIX_TOOLS: [(&str, &str, &[&str]); 3] = [
    (
        "get_weather",
        "Current weather for a city",
        &["city", "unit"],
    ),
    (
        "search_catalog",
        "Search the product catalog",
        &["query", "category", "page"],
    ),
    (
        "create_ticket",
        "Open a support ticket",
        &["title", "body", "priority"],
    ),
];

fn tool_schema(properties: &[&str]) -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = properties
        .iter()
        .map(|name| ((*name).to_owned(), json!({"type": "string"})))
        .collect();
    json!({"type": "object", "properties": properties, "required": [properties.keys().next()]})
}

/// `POST /v1/chat/completions` on the gateway.
pub fn gateway_chat(
    endpoint: &Endpoint,
    api_key: &str,
    model: &str,
    prompt: &str,
    delivery: Delivery,
    payload: Payload,
) -> Result<PreparedRequest> {
    let mut body = match payload {
        Payload::Text => json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
        }),
        Payload::ToolsAndImage => json!({
            "model": model,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{MIX_PNG_BASE64}")}},
            ]}],
            "tools": MIX_TOOLS.iter().map(|(name, description, properties)| json!({
                "type": "function",
                "function": {"name": name, "description": description, "parameters": tool_schema(properties)},
            })).collect::<Vec<_>>(),
        }),
    };
    if delivery == Delivery::Streamed {
        body["stream"] = json!(true);
    }
    let headers = header_map(&[
        (HOST.as_str().to_owned(), endpoint.authority.clone()),
        (CONTENT_TYPE.as_str().to_owned(), "application/json".into()),
        (
            AUTHORIZATION.as_str().to_owned(),
            format!("Bearer {api_key}"),
        ),
    ])?;
    Ok(PreparedRequest {
        uri: origin_form("/v1/chat/completions")?,
        headers,
        body: Bytes::from(body.to_string()),
    })
}

/// Percent-encodes a path label the way the AWS SDKs do (`:` becomes `%3A`).
pub fn encode_path_label(label: &str) -> String {
    let mut encoded = String::with_capacity(label.len() + 8);
    for byte in label.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A signed Converse (`Unary`) or ConverseStream (`Streamed`) call on the emulator.
pub fn emulator_converse(
    endpoint: &Endpoint,
    signer: &AwsSigner,
    model: &str,
    prompt: &str,
    delivery: Delivery,
    payload: Payload,
) -> Result<PreparedRequest> {
    let operation = match delivery {
        Delivery::Unary => "converse",
        Delivery::Streamed => "converse-stream",
    };
    let path = format!("/model/{}/{operation}", encode_path_label(model));
    let body = match payload {
        Payload::Text => json!({
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
        }),
        Payload::ToolsAndImage => json!({
            "messages": [{"role": "user", "content": [
                {"text": prompt},
                {"image": {"format": "png", "source": {"bytes": MIX_PNG_BASE64}}},
            ]}],
            "toolConfig": {
                "tools": MIX_TOOLS.iter().map(|(name, description, properties)| json!({
                    "toolSpec": {"name": name, "description": description,
                        "inputSchema": {"json": tool_schema(properties)}},
                })).collect::<Vec<_>>(),
                "toolChoice": {"auto": {}},
            },
        }),
    }
    .to_string();
    let mut pairs = vec![
        (HOST.as_str().to_owned(), endpoint.authority.clone()),
        (
            CONTENT_TYPE.as_str().to_owned(),
            "application/json".to_owned(),
        ),
    ];
    let signature = signer.signature_headers(
        "POST",
        &endpoint.url(&path),
        &pairs,
        body.as_bytes(),
        SystemTime::now(),
    )?;
    pairs.extend(signature);
    Ok(PreparedRequest {
        uri: origin_form(&path)?,
        headers: header_map(&pairs)?,
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::parse("http://127.0.0.1:4599").unwrap()
    }

    #[test]
    fn model_ids_are_encoded_like_the_sdk_does() {
        assert_eq!(
            encode_path_label("anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1%3A0"
        );
        assert_eq!(encode_path_label("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn emulator_requests_are_signed() {
        let signer = AwsSigner {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            region: "us-east-1".into(),
        };
        let request = emulator_converse(
            &endpoint(),
            &signer,
            "m:0",
            "hi",
            Delivery::Streamed,
            Payload::Text,
        )
        .unwrap();
        let http = request.to_http();
        assert_eq!(http.uri().path(), "/model/m%3A0/converse-stream");
        assert!(http.headers().contains_key("authorization"));
        assert!(http.headers().contains_key("x-amz-date"));
        assert_eq!(http.headers()["host"], "127.0.0.1:4599");
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["messages"][0]["content"][0]["text"], "hi");
    }

    #[test]
    fn gateway_requests_carry_the_key_and_stream_flag() {
        let request = gateway_chat(
            &endpoint(),
            "k",
            "model",
            "hello",
            Delivery::Streamed,
            Payload::Text,
        )
        .unwrap();
        let http = request.to_http();
        assert_eq!(http.headers()["authorization"], "Bearer k");
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["stream"], true);
        let unary = gateway_chat(
            &endpoint(),
            "k",
            "model",
            "hello",
            Delivery::Unary,
            Payload::Text,
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(unary.body()).unwrap();
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn tool_and_image_requests_carry_the_same_payload_on_both_paths() {
        let signer = AwsSigner {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            region: "us-east-1".into(),
        };
        let gateway = gateway_chat(
            &endpoint(),
            "k",
            "model",
            "hello",
            Delivery::Unary,
            Payload::ToolsAndImage,
        )
        .unwrap();
        let gateway: serde_json::Value = serde_json::from_slice(gateway.body()).unwrap();
        let direct = emulator_converse(
            &endpoint(),
            &signer,
            "model",
            "hello",
            Delivery::Unary,
            Payload::ToolsAndImage,
        )
        .unwrap();
        let direct: serde_json::Value = serde_json::from_slice(direct.body()).unwrap();
        let names = |tools: &serde_json::Value, pointer: &str| -> Vec<String> {
            tools
                .as_array()
                .unwrap()
                .iter()
                .map(|tool| tool.pointer(pointer).unwrap().as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(&gateway["tools"], "/function/name"),
            ["get_weather", "search_catalog", "create_ticket"]
        );
        assert_eq!(
            names(&gateway["tools"], "/function/name"),
            names(&direct["toolConfig"]["tools"], "/toolSpec/name")
        );
        assert_eq!(
            gateway["tools"][1]["function"]["parameters"],
            direct["toolConfig"]["tools"][1]["toolSpec"]["inputSchema"]["json"]
        );
        assert_eq!(
            gateway["messages"][0]["content"][1]["image_url"]["url"],
            format!("data:image/png;base64,{MIX_PNG_BASE64}")
        );
        assert_eq!(
            direct["messages"][0]["content"][1]["image"]["source"]["bytes"],
            MIX_PNG_BASE64
        );
    }
}
