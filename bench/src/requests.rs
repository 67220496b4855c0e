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

/// `POST /v1/chat/completions` on the gateway.
pub fn gateway_chat(
    endpoint: &Endpoint,
    api_key: &str,
    model: &str,
    prompt: &str,
    delivery: Delivery,
) -> Result<PreparedRequest> {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
    });
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
) -> Result<PreparedRequest> {
    let operation = match delivery {
        Delivery::Unary => "converse",
        Delivery::Streamed => "converse-stream",
    };
    let path = format!("/model/{}/{operation}", encode_path_label(model));
    let body = json!({
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
    })
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
        let request =
            emulator_converse(&endpoint(), &signer, "m:0", "hi", Delivery::Streamed).unwrap();
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
        let request = gateway_chat(&endpoint(), "k", "model", "hello", Delivery::Streamed).unwrap();
        let http = request.to_http();
        assert_eq!(http.headers()["authorization"], "Bearer k");
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["stream"], true);
        let unary = gateway_chat(&endpoint(), "k", "model", "hello", Delivery::Unary).unwrap();
        let body: serde_json::Value = serde_json::from_slice(unary.body()).unwrap();
        assert!(body.get("stream").is_none());
    }
}
