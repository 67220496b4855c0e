//! OpenAI `/embeddings` <-> Bedrock InvokeModel bodies of the Titan and
//! Cohere embedding families.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

/// OpenAI's own limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;
/// Cohere Embed on Bedrock takes at most 96 texts per call.
pub const COHERE_BATCH: usize = 96;

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Extra body field for Cohere: `search_document` (default),
    /// `search_query`, `classification` or `clustering`.
    #[serde(default)]
    pub input_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFamily {
    TitanV1,
    TitanV2,
    CohereV3,
    CohereV4,
}

impl EmbeddingFamily {
    fn batch_size(self) -> usize {
        match self {
            EmbeddingFamily::TitanV1 | EmbeddingFamily::TitanV2 => 1,
            EmbeddingFamily::CohereV3 | EmbeddingFamily::CohereV4 => COHERE_BATCH,
        }
    }
}

/// The family of a Bedrock embedding model id (cross-region prefixes allowed).
pub fn family_of(model_id: &str) -> Option<EmbeddingFamily> {
    let id = ["us.", "eu.", "apac.", "global.", "us-gov."]
        .iter()
        .find_map(|prefix| model_id.strip_prefix(prefix))
        .unwrap_or(model_id);
    if id.starts_with("amazon.titan-embed-text-v1") {
        Some(EmbeddingFamily::TitanV1)
    } else if id.starts_with("amazon.titan-embed-text-v2") {
        Some(EmbeddingFamily::TitanV2)
    } else if id.starts_with("cohere.embed-english-v3")
        || id.starts_with("cohere.embed-multilingual-v3")
    {
        Some(EmbeddingFamily::CohereV3)
    } else if id.starts_with("cohere.embed-v4") {
        Some(EmbeddingFamily::CohereV4)
    } else {
        None
    }
}

/// Embedding model ids as Bedrock publishes them; anything else is labelled
/// `unlisted` in metrics so client input cannot grow label sets.
pub const KNOWN_MODELS: &[&str] = &[
    "amazon.titan-embed-text-v1",
    "amazon.titan-embed-text-v2:0",
    "cohere.embed-english-v3",
    "cohere.embed-multilingual-v3",
    "cohere.embed-v4:0",
    "us.cohere.embed-v4:0",
    "eu.cohere.embed-v4:0",
    "apac.cohere.embed-v4:0",
    "global.cohere.embed-v4:0",
];

pub fn parse_request(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    super::parse_json_body(body)
}

/// The texts to embed; token arrays are decoded with OpenAI's `cl100k_base`
/// tokenizer, the one OpenAI clients use to pre-tokenise embedding input.
pub fn input_texts(input: &EmbeddingInput) -> Result<Vec<String>, ApiError> {
    let decode = |tokens: &[u32], param: String| {
        tiktoken_rs::cl100k_base_singleton()
            .decode(tokens)
            .map_err(|error| {
                ApiError::invalid(
                    format!("Cannot decode the token array: {error}"),
                    Some(&param),
                )
            })
    };
    let texts = match input {
        EmbeddingInput::Text(text) => vec![text.clone()],
        EmbeddingInput::Texts(texts) => texts.clone(),
        EmbeddingInput::Tokens(tokens) => vec![decode(tokens, "input".to_owned())?],
        EmbeddingInput::TokenLists(lists) => lists
            .iter()
            .enumerate()
            .map(|(index, tokens)| decode(tokens, format!("input[{index}]")))
            .collect::<Result<_, _>>()?,
    };
    if texts.is_empty() {
        return Err(ApiError::invalid(
            "'input' must not be empty.",
            Some("input"),
        ));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            format!("At most {MAX_INPUTS} inputs are accepted per request."),
            Some("input"),
        ));
    }
    if let Some(index) = texts.iter().position(|text| text.trim().is_empty()) {
        return Err(ApiError::invalid(
            "Inputs must not be empty strings.",
            Some(&if texts.len() == 1 {
                "input".to_owned()
            } else {
                format!("input[{index}]")
            }),
        ));
    }
    Ok(texts)
}

fn check_dimensions(family: EmbeddingFamily, dimensions: Option<u32>) -> Result<(), ApiError> {
    let allowed: &[u32] = match family {
        EmbeddingFamily::TitanV1 => &[1536],
        EmbeddingFamily::TitanV2 => &[256, 512, 1024],
        EmbeddingFamily::CohereV3 => &[1024],
        EmbeddingFamily::CohereV4 => &[256, 512, 1024, 1536],
    };
    match dimensions {
        Some(requested) if !allowed.contains(&requested) => Err(ApiError::invalid(
            format!("This model supports dimensions {allowed:?}, not {requested}."),
            Some("dimensions"),
        )),
        _ => Ok(()),
    }
}

/// One InvokeModel body per batch, with the number of texts it carries.
pub fn invoke_bodies(
    family: EmbeddingFamily,
    texts: &[String],
    dimensions: Option<u32>,
    input_type: Option<&str>,
) -> Result<Vec<(Value, usize)>, ApiError> {
    check_dimensions(family, dimensions)?;
    let input_type = input_type.unwrap_or("search_document");
    if ![
        "search_document",
        "search_query",
        "classification",
        "clustering",
    ]
    .contains(&input_type)
    {
        return Err(ApiError::invalid(
            format!(
                "input_type '{input_type}' is not one of search_document, search_query, classification, clustering."
            ),
            Some("input_type"),
        ));
    }
    Ok(texts
        .chunks(family.batch_size())
        .map(|batch| {
            let body = match family {
                EmbeddingFamily::TitanV1 => json!({"inputText": batch[0]}),
                EmbeddingFamily::TitanV2 => {
                    json!({"inputText": batch[0], "dimensions": dimensions.unwrap_or(1024), "normalize": true})
                }
                EmbeddingFamily::CohereV3 => {
                    json!({"texts": batch, "input_type": input_type, "truncate": "END"})
                }
                EmbeddingFamily::CohereV4 => json!({"texts": batch, "input_type": input_type,
                    "truncate": "END", "embedding_types": ["float"],
                    "output_dimension": dimensions.unwrap_or(1536)}),
            };
            (body, batch.len())
        })
        .collect())
}

fn malformed(detail: &str) -> ApiError {
    ApiError::Upstream(crate::error::UpstreamError {
        status: 502,
        code: "InvalidBedrockResponse".into(),
        message: format!("Bedrock's embedding reply could not be read: {detail}"),
        retry_after_seconds: None,
    })
}

fn vector(value: &Value) -> Result<Vec<f32>, ApiError> {
    value
        .as_array()
        .ok_or_else(|| malformed("an embedding is not an array"))?
        .iter()
        .map(|number| {
            number
                .as_f64()
                .map(|float| float as f32)
                .ok_or_else(|| malformed("an embedding holds a non-number"))
        })
        .collect()
}

/// The vectors of one InvokeModel reply, and the token count when it has one.
pub fn parse_reply(
    family: EmbeddingFamily,
    body: &[u8],
    expected: usize,
) -> Result<(Vec<Vec<f32>>, Option<u64>), ApiError> {
    let reply: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    let (vectors, tokens) = match family {
        EmbeddingFamily::TitanV1 | EmbeddingFamily::TitanV2 => (
            vec![vector(&reply["embedding"])?],
            reply["inputTextTokenCount"].as_u64(),
        ),
        EmbeddingFamily::CohereV3 | EmbeddingFamily::CohereV4 => {
            let list = match &reply["embeddings"] {
                Value::Array(list) => list,
                Value::Object(by_type) => by_type
                    .get("float")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed("no float embeddings"))?,
                _ => return Err(malformed("no embeddings")),
            };
            (list.iter().map(vector).collect::<Result<_, _>>()?, None)
        }
    };
    if vectors.len() != expected {
        return Err(malformed(
            "the number of embeddings does not match the inputs",
        ));
    }
    Ok((vectors, tokens))
}

/// The InvokeModel response header with Bedrock's count of input tokens.
pub const INPUT_TOKEN_COUNT_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// The value of [`INPUT_TOKEN_COUNT_HEADER`], when it is a count.
pub fn header_token_count(value: Option<&str>) -> Option<u64> {
    value.and_then(|value| value.trim().parse().ok())
}

/// Tokens of the inputs as the cl100k tokenizer counts them, for replies
/// that carry no count of their own.
pub fn estimated_tokens(texts: &[String]) -> u64 {
    let tokenizer = tiktoken_rs::cl100k_base_singleton();
    texts
        .iter()
        .map(|text| tokenizer.encode_ordinary(text).len() as u64)
        .sum()
}

fn encode(vector: &[f32], format: EncodingFormat) -> Value {
    match format {
        EncodingFormat::Float => json!(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

pub fn to_response(
    model: &str,
    vectors: &[Vec<f32>],
    format: EncodingFormat,
    tokens: u64,
) -> Value {
    json!({
        "object": "list",
        "data": vectors.iter().enumerate().map(|(index, vector)| json!({
            "object": "embedding", "index": index, "embedding": encode(vector, format)
        })).collect::<Vec<_>>(),
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("text {index}")).collect()
    }

    #[test]
    fn token_count_headers_are_read_when_numeric() {
        assert_eq!(header_token_count(Some("42")), Some(42));
        assert_eq!(header_token_count(Some(" 7 ")), Some(7));
        assert_eq!(header_token_count(Some("0")), Some(0));
        for bad in ["", "-1", "1.5", "many", "18446744073709551616"] {
            assert_eq!(header_token_count(Some(bad)), None, "{bad}");
        }
        assert_eq!(header_token_count(None), None);
    }

    #[test]
    fn families_are_recognised() {
        let cases = [
            ("amazon.titan-embed-text-v1", Some(EmbeddingFamily::TitanV1)),
            (
                "amazon.titan-embed-text-v2:0",
                Some(EmbeddingFamily::TitanV2),
            ),
            ("cohere.embed-english-v3", Some(EmbeddingFamily::CohereV3)),
            (
                "cohere.embed-multilingual-v3",
                Some(EmbeddingFamily::CohereV3),
            ),
            ("cohere.embed-v4:0", Some(EmbeddingFamily::CohereV4)),
            ("us.cohere.embed-v4:0", Some(EmbeddingFamily::CohereV4)),
            ("anthropic.claude-3-haiku-20240307-v1:0", None),
            ("amazon.titan-embed-image-v1", None),
        ];
        for (id, family) in cases {
            assert_eq!(family_of(id), family, "{id}");
        }
    }

    #[test]
    fn inputs_of_every_shape_become_texts() {
        let parse = |value: Value| {
            parse_request(json!({"model": "m", "input": value}).to_string().as_bytes())
                .unwrap()
                .input
        };
        assert_eq!(input_texts(&parse(json!("hello"))).unwrap(), ["hello"]);
        assert_eq!(input_texts(&parse(json!(["a", "b"]))).unwrap(), ["a", "b"]);
        let tokens = tiktoken_rs::cl100k_base_singleton().encode_ordinary("hello world");
        assert_eq!(input_texts(&parse(json!(tokens))).unwrap(), ["hello world"]);
        assert_eq!(
            input_texts(&parse(json!([tokens, tokens]))).unwrap(),
            ["hello world", "hello world"]
        );
    }

    #[test]
    fn bad_inputs_are_refused_by_name() {
        let parse = |value: Value| {
            parse_request(json!({"model": "m", "input": value}).to_string().as_bytes())
                .map(|request| request.input)
        };
        let param = |error: ApiError| error.envelope().error.param;
        assert_eq!(
            param(input_texts(&parse(json!([])).unwrap()).unwrap_err()).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(input_texts(&parse(json!(["a", " "])).unwrap()).unwrap_err()).as_deref(),
            Some("input[1]")
        );
        assert_eq!(
            param(input_texts(&parse(json!([[1], [4_000_000_000u32]])).unwrap()).unwrap_err())
                .as_deref(),
            Some("input[1]")
        );
        assert_eq!(
            param(input_texts(&parse(json!(vec!["x"; MAX_INPUTS + 1])).unwrap()).unwrap_err())
                .as_deref(),
            Some("input")
        );
        assert!(parse(json!(5)).is_err());
        assert!(
            parse_request(b"{\"input\": \"x\"}")
                .unwrap_err()
                .to_string()
                .contains("model")
        );
    }

    #[test]
    fn bodies_follow_each_family_and_batch_at_the_limit() {
        let titan = invoke_bodies(EmbeddingFamily::TitanV2, &texts(3), Some(256), None).unwrap();
        assert_eq!(titan.len(), 3);
        assert_eq!(
            titan[1].0,
            json!({"inputText": "text 1", "dimensions": 256, "normalize": true})
        );
        let v1 = invoke_bodies(EmbeddingFamily::TitanV1, &texts(1), None, None).unwrap();
        assert_eq!(v1[0].0, json!({"inputText": "text 0"}));
        let cohere = invoke_bodies(
            EmbeddingFamily::CohereV3,
            &texts(200),
            None,
            Some("search_query"),
        )
        .unwrap();
        assert_eq!(
            cohere.iter().map(|(_, count)| *count).collect::<Vec<_>>(),
            [96, 96, 8]
        );
        assert_eq!(cohere[0].0["input_type"], "search_query");
        assert_eq!(cohere[2].0["texts"].as_array().unwrap().len(), 8);
        let v4 = invoke_bodies(EmbeddingFamily::CohereV4, &texts(2), Some(512), None).unwrap();
        assert_eq!(v4[0].0["output_dimension"], 512);
        assert_eq!(v4[0].0["embedding_types"], json!(["float"]));
    }

    #[test]
    fn unsupported_dimensions_and_input_types_are_refused() {
        for (family, dimensions) in [
            (EmbeddingFamily::TitanV2, 100),
            (EmbeddingFamily::TitanV1, 256),
            (EmbeddingFamily::CohereV3, 512),
            (EmbeddingFamily::CohereV4, 2048),
        ] {
            let error = invoke_bodies(family, &texts(1), Some(dimensions), None).unwrap_err();
            assert_eq!(error.envelope().error.param.as_deref(), Some("dimensions"));
        }
        let error =
            invoke_bodies(EmbeddingFamily::CohereV3, &texts(1), None, Some("poetry")).unwrap_err();
        assert_eq!(error.envelope().error.param.as_deref(), Some("input_type"));
    }

    #[test]
    fn replies_are_read_per_family() {
        let (vectors, tokens) = parse_reply(
            EmbeddingFamily::TitanV2,
            br#"{"embedding":[0.5,-1],"inputTextTokenCount":3}"#,
            1,
        )
        .unwrap();
        assert_eq!((vectors, tokens), (vec![vec![0.5, -1.0]], Some(3)));
        let (vectors, _) = parse_reply(
            EmbeddingFamily::CohereV3,
            br#"{"id":"x","embeddings":[[1],[2]],"response_type":"embeddings_floats"}"#,
            2,
        )
        .unwrap();
        assert_eq!(vectors, vec![vec![1.0], vec![2.0]]);
        let (vectors, _) = parse_reply(
            EmbeddingFamily::CohereV4,
            br#"{"embeddings":{"float":[[3]]}}"#,
            1,
        )
        .unwrap();
        assert_eq!(vectors, vec![vec![3.0]]);
        for bad in [
            &b"nope"[..],
            br#"{"embedding":"x"}"#,
            br#"{"embedding":[1,"a"]}"#,
        ] {
            assert_eq!(
                parse_reply(EmbeddingFamily::TitanV1, bad, 1)
                    .unwrap_err()
                    .status()
                    .as_u16(),
                502
            );
        }
        assert!(parse_reply(EmbeddingFamily::CohereV3, br#"{"embeddings":[[1]]}"#, 2).is_err());
    }

    #[test]
    fn responses_encode_floats_or_base64() {
        let floats = to_response("m", &[vec![1.0, 0.5]], EncodingFormat::Float, 4);
        assert_eq!(
            floats["data"][0],
            json!({"object": "embedding", "index": 0, "embedding": [1.0, 0.5]})
        );
        assert_eq!(
            floats["usage"],
            json!({"prompt_tokens": 4, "total_tokens": 4})
        );
        let encoded = to_response("m", &[vec![1.0, 0.5]], EncodingFormat::Base64, 4);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, [1.0, 0.5]);
        assert!(estimated_tokens(&["hello world".into()]) >= 2);
    }
}
