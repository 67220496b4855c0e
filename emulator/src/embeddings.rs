//! InvokeModel for embedding models: request validation per model family and deterministic
//! vectors seeded from a SHA-256 of each input text (after scripting directives are removed).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::ModelFamily;
use crate::converse::word_count;
use crate::error::Error;
use crate::faults::{self, Faults};

/// The InvokeModel answer for an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingReply {
    pub body: Value,
    pub input_token_count: u64,
    pub faults: Faults,
}

fn malformed(detail: impl std::fmt::Display) -> Error {
    Error::validation(format!(
        "Malformed input request: {detail}, please reformat your input and try again."
    ))
}

/// Answers an InvokeModel body for the given embedding family.
pub fn invoke(family: ModelFamily, model_id: &str, body: &[u8]) -> Result<EmbeddingReply, Error> {
    let document: Value = serde_json::from_slice(body).map_err(malformed)?;
    let Value::Object(fields) = document else {
        return Err(malformed("#: expected type: JSONObject"));
    };
    match family {
        ModelFamily::TitanEmbedV1 => titan(&fields, false),
        ModelFamily::TitanEmbedV2 => titan(&fields, true),
        ModelFamily::CohereEmbedV3 => cohere(&fields, false),
        ModelFamily::CohereEmbedV4 => cohere(&fields, true),
        ModelFamily::Chat | ModelFamily::Image => Err(Error::validation(format!(
            "The emulator answers InvokeModel only for embedding models; use Converse or ConverseStream for {model_id}."
        ))),
    }
}

fn reject_extraneous(fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), Error> {
    match fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(malformed(format!(
            "#: extraneous key [{key}] is not permitted"
        ))),
        None => Ok(()),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "Integer",
        Value::Number(_) => "BigDecimal",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

fn expect_string<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Error> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(malformed(format!(
            "#/{key}: expected type: String, found: {}",
            type_name(other)
        ))),
    }
}

fn expect_string_array(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, Error> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(malformed(format!(
                    "#/{key}/{index}: expected type: String, found: {}",
                    type_name(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(malformed(format!(
            "#/{key}: expected type: JSONArray, found: {}",
            type_name(other)
        ))),
    }
}

fn expect_enum<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, Error> {
    match expect_string(fields, key)? {
        Some(value) if !allowed.contains(&value) => Err(malformed(format!(
            "#/{key}: {value} is not a valid enum value"
        ))),
        other => Ok(other),
    }
}

fn expect_dimension(
    fields: &Map<String, Value>,
    key: &str,
    allowed: &[u64],
    default: u64,
) -> Result<usize, Error> {
    match fields.get(key) {
        None => Ok(default as usize),
        Some(value) => match value.as_u64() {
            Some(number) if allowed.contains(&number) => Ok(number as usize),
            _ => Err(malformed(format!(
                "#/{key}: {value} is not a valid enum value"
            ))),
        },
    }
}

/// Strips directives from one input text, merging the faults it scripts.
fn strip(text: &str, faults: &mut Faults) -> Result<String, Error> {
    let (clean, found) = faults::extract(text)?;
    if found.error.is_some() {
        faults.error = found.error;
    }
    if !found.delay_first.is_zero() {
        faults.delay_first = found.delay_first;
    }
    Ok(clean)
}

fn titan(fields: &Map<String, Value>, v2: bool) -> Result<EmbeddingReply, Error> {
    let allowed: &[&str] = if v2 {
        &["inputText", "dimensions", "normalize", "embeddingTypes"]
    } else {
        &["inputText"]
    };
    reject_extraneous(fields, allowed)?;
    let text = expect_string(fields, "inputText")?
        .ok_or_else(|| malformed("#: required key [inputText] not found"))?;
    if text.is_empty() {
        return Err(malformed("expected minLength: 1, actual: 0"));
    }
    let dimensions = if v2 {
        expect_dimension(fields, "dimensions", &[256, 512, 1024], 1024)?
    } else {
        1536
    };
    let normalize = match fields.get("normalize") {
        None => v2,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(malformed(format!(
                "#/normalize: expected type: Boolean, found: {}",
                type_name(other)
            )));
        }
    };
    let embedding_types = expect_string_array(fields, "embeddingTypes")?;
    let mut faults = Faults::default();
    let clean = strip(text, &mut faults)?;
    let vector = embedding_vector(&clean, dimensions, normalize);
    let token_count = word_count(text).max(1) as u64;
    let mut body = json!({
        "embedding": vector,
        "inputTextTokenCount": token_count,
    });
    if let Some(types) = embedding_types {
        let mut by_type = Map::new();
        for kind in types {
            let value = match kind.as_str() {
                "float" => json!(vector),
                "binary" => json!(
                    vector
                        .iter()
                        .map(|v| u8::from(*v > 0.0))
                        .collect::<Vec<_>>()
                ),
                other => {
                    return Err(malformed(format!(
                        "#/embeddingTypes: {other} is not a valid enum value"
                    )));
                }
            };
            by_type.insert(kind, value);
        }
        body["embeddingsByType"] = Value::Object(by_type);
    }
    Ok(EmbeddingReply {
        body,
        input_token_count: token_count,
        faults,
    })
}

const COHERE_INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
];
const COHERE_EMBEDDING_TYPES: &[&str] = &["float", "int8", "uint8", "binary", "ubinary"];
const COHERE_MAX_TEXTS: usize = 96;

fn cohere(fields: &Map<String, Value>, v4: bool) -> Result<EmbeddingReply, Error> {
    let allowed: &[&str] = if v4 {
        &[
            "texts",
            "images",
            "inputs",
            "input_type",
            "truncate",
            "embedding_types",
            "output_dimension",
            "max_tokens",
        ]
    } else {
        &[
            "texts",
            "images",
            "input_type",
            "truncate",
            "embedding_types",
        ]
    };
    reject_extraneous(fields, allowed)?;
    let texts = expect_string_array(fields, "texts")?
        .ok_or_else(|| malformed("#: required key [texts] not found"))?;
    if texts.is_empty() {
        return Err(malformed(
            "#/texts: expected minimum item count: 1, found: 0",
        ));
    }
    if texts.len() > COHERE_MAX_TEXTS {
        return Err(malformed(format!(
            "#/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {}",
            texts.len()
        )));
    }
    let mut input_types = COHERE_INPUT_TYPES.to_vec();
    if v4 {
        input_types.push("image");
    }
    expect_enum(fields, "input_type", &input_types)?
        .ok_or_else(|| malformed("#: required key [input_type] not found"))?;
    expect_enum(
        fields,
        "truncate",
        &["NONE", "START", "END", "LEFT", "RIGHT"],
    )?;
    let requested_types = expect_string_array(fields, "embedding_types")?;
    if let Some(types) = &requested_types {
        for (index, kind) in types.iter().enumerate() {
            if !COHERE_EMBEDDING_TYPES.contains(&kind.as_str()) {
                return Err(malformed(format!(
                    "#/embedding_types/{index}: {kind} is not a valid enum value"
                )));
            }
        }
    }
    let dimensions = if v4 {
        expect_dimension(fields, "output_dimension", &[256, 512, 1024, 1536], 1536)?
    } else {
        1024
    };

    let mut faults = Faults::default();
    let mut vectors = Vec::with_capacity(texts.len());
    for text in &texts {
        let clean = strip(text, &mut faults)?;
        vectors.push(embedding_vector(&clean, dimensions, true));
    }
    let token_count = texts
        .iter()
        .map(|text| word_count(text))
        .sum::<usize>()
        .max(1) as u64;

    let (embeddings, response_type) = match (requested_types, v4) {
        (None, false) => (json!(vectors), "embeddings_floats"),
        (types, _) => {
            let types = types.unwrap_or_else(|| vec!["float".to_string()]);
            let mut by_type = Map::new();
            for kind in types {
                let encoded: Vec<Value> = vectors
                    .iter()
                    .map(|vector| quantize(vector, &kind))
                    .collect();
                by_type.insert(kind, Value::Array(encoded));
            }
            (Value::Object(by_type), "embeddings_by_type")
        }
    };
    Ok(EmbeddingReply {
        body: json!({
            "id": response_id(&texts),
            "embeddings": embeddings,
            "response_type": response_type,
            "texts": texts,
        }),
        input_token_count: token_count,
        faults,
    })
}

fn quantize(vector: &[f32], kind: &str) -> Value {
    let max = vector
        .iter()
        .fold(0f32, |acc, v| acc.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let scaled = || vector.iter().map(move |v| (v / max * 127.0).round() as i32);
    let bits = || {
        vector.chunks(8).map(|chunk| {
            chunk.iter().enumerate().fold(
                0u8,
                |byte, (bit, v)| if *v > 0.0 { byte | (0x80 >> bit) } else { byte },
            )
        })
    };
    match kind {
        "int8" => json!(scaled().collect::<Vec<_>>()),
        "uint8" => json!(scaled().map(|v| v + 128).collect::<Vec<_>>()),
        "binary" => json!(bits().map(|b| i32::from(b) - 128).collect::<Vec<_>>()),
        "ubinary" => json!(bits().collect::<Vec<_>>()),
        _ => json!(vector),
    }
}

fn response_id(texts: &[String]) -> String {
    let mut hasher = Sha256::new();
    for text in texts {
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic pseudo-random vector for `text`, optionally scaled to unit length.
pub fn embedding_vector(text: &str, dimensions: usize, normalize: bool) -> Vec<f32> {
    let digest = Sha256::digest(text.as_bytes());
    let mut seed_bytes = [0u8; 8];
    seed_bytes.copy_from_slice(&digest[..8]);
    let mut state = u64::from_be_bytes(seed_bytes);
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            let unit = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            (unit * 2.0 - 1.0) as f32
        })
        .collect();
    if normalize {
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|v| *v /= norm);
        }
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn call(family: ModelFamily, body: Value) -> Result<EmbeddingReply, String> {
        invoke(family, "model", body.to_string().as_bytes()).map_err(|error| {
            let (kind, message) = error.as_service();
            assert_eq!(kind, ErrorKind::Validation);
            message
        })
    }

    fn norm(values: &Value) -> f64 {
        values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn vectors_are_deterministic_and_text_dependent() {
        assert_eq!(
            embedding_vector("a", 8, false),
            embedding_vector("a", 8, false)
        );
        assert_ne!(
            embedding_vector("a", 8, false),
            embedding_vector("b", 8, false)
        );
        let unit = embedding_vector("a", 1024, true);
        let length: f32 = unit.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-4);
    }

    #[test]
    fn titan_v1() {
        let reply = call(
            ModelFamily::TitanEmbedV1,
            json!({"inputText": "hello there world"}),
        )
        .unwrap();
        assert_eq!(reply.body["embedding"].as_array().unwrap().len(), 1536);
        assert_eq!(reply.body["inputTextTokenCount"], 3);
        assert_eq!(reply.input_token_count, 3);
        let error = call(
            ModelFamily::TitanEmbedV1,
            json!({"inputText": "x", "dimensions": 256}),
        )
        .unwrap_err();
        assert!(error.contains("extraneous key [dimensions]"));
    }

    #[test]
    fn titan_v2_dimensions_and_normalisation() {
        let default = call(ModelFamily::TitanEmbedV2, json!({"inputText": "hi"})).unwrap();
        assert_eq!(default.body["embedding"].as_array().unwrap().len(), 1024);
        assert!((norm(&default.body["embedding"]) - 1.0).abs() < 1e-3);
        let small = call(
            ModelFamily::TitanEmbedV2,
            json!({"inputText": "hi", "dimensions": 256, "normalize": false, "embeddingTypes": ["float", "binary"]}),
        )
        .unwrap();
        assert_eq!(small.body["embedding"].as_array().unwrap().len(), 256);
        assert!(norm(&small.body["embedding"]) > 2.0);
        assert_eq!(
            small.body["embeddingsByType"]["binary"]
                .as_array()
                .unwrap()
                .len(),
            256
        );
        assert!(
            call(
                ModelFamily::TitanEmbedV2,
                json!({"inputText": "hi", "dimensions": 300})
            )
            .unwrap_err()
            .contains("dimensions")
        );
        assert!(
            call(ModelFamily::TitanEmbedV2, json!({}))
                .unwrap_err()
                .contains("required key [inputText]")
        );
        assert!(
            call(ModelFamily::TitanEmbedV2, json!({"inputText": 3}))
                .unwrap_err()
                .contains("expected type: String")
        );
        assert!(
            call(ModelFamily::TitanEmbedV2, json!({"inputText": ""}))
                .unwrap_err()
                .contains("minLength")
        );
    }

    #[test]
    fn cohere_v3_floats() {
        let reply = call(
            ModelFamily::CohereEmbedV3,
            json!({"texts": ["one", "two words"], "input_type": "search_document", "truncate": "END"}),
        )
        .unwrap();
        assert_eq!(reply.body["response_type"], "embeddings_floats");
        let embeddings = reply.body["embeddings"].as_array().unwrap();
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings[0].as_array().unwrap().len(), 1024);
        assert_eq!(reply.body["texts"], json!(["one", "two words"]));
        assert_eq!(reply.input_token_count, 3);
        assert_eq!(reply.body["id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn cohere_v3_by_type() {
        let reply = call(
            ModelFamily::CohereEmbedV3,
            json!({"texts": ["one"], "input_type": "search_query", "embedding_types": ["float", "int8", "ubinary"]}),
        )
        .unwrap();
        assert_eq!(reply.body["response_type"], "embeddings_by_type");
        assert_eq!(
            reply.body["embeddings"]["int8"][0]
                .as_array()
                .unwrap()
                .len(),
            1024
        );
        assert_eq!(
            reply.body["embeddings"]["ubinary"][0]
                .as_array()
                .unwrap()
                .len(),
            128
        );
    }

    #[test]
    fn cohere_validation() {
        let too_many: Vec<String> = (0..97).map(|i| i.to_string()).collect();
        assert!(
            call(
                ModelFamily::CohereEmbedV3,
                json!({"texts": too_many, "input_type": "clustering"})
            )
            .unwrap_err()
            .contains("maximum item count: 96")
        );
        assert!(
            call(ModelFamily::CohereEmbedV3, json!({"texts": []}))
                .unwrap_err()
                .contains("minimum item count")
        );
        assert!(
            call(ModelFamily::CohereEmbedV3, json!({"texts": ["a"]}))
                .unwrap_err()
                .contains("[input_type]")
        );
        assert!(
            call(
                ModelFamily::CohereEmbedV3,
                json!({"texts": ["a"], "input_type": "x"})
            )
            .unwrap_err()
            .contains("input_type")
        );
        assert!(
            call(
                ModelFamily::CohereEmbedV3,
                json!({"texts": ["a"], "input_type": "clustering", "output_dimension": 256})
            )
            .unwrap_err()
            .contains("extraneous")
        );
        assert!(
            call(ModelFamily::CohereEmbedV3, json!([1]))
                .unwrap_err()
                .contains("JSONObject")
        );
        assert!(invoke(ModelFamily::CohereEmbedV3, "m", b"{not json").is_err());
    }

    #[test]
    fn cohere_v4_is_keyed_by_type() {
        let reply = call(
            ModelFamily::CohereEmbedV4,
            json!({"texts": ["one"], "input_type": "search_document"}),
        )
        .unwrap();
        assert_eq!(reply.body["response_type"], "embeddings_by_type");
        assert_eq!(
            reply.body["embeddings"]["float"][0]
                .as_array()
                .unwrap()
                .len(),
            1536
        );
        let small = call(
            ModelFamily::CohereEmbedV4,
            json!({"texts": ["one"], "input_type": "search_document", "output_dimension": 256}),
        )
        .unwrap();
        assert_eq!(
            small.body["embeddings"]["float"][0]
                .as_array()
                .unwrap()
                .len(),
            256
        );
    }

    #[test]
    fn directives_in_embedding_text() {
        let reply = call(
            ModelFamily::TitanEmbedV2,
            json!({"inputText": "hi [[emu:error=ThrottlingException]]"}),
        )
        .unwrap();
        assert_eq!(reply.faults.error, Some(ErrorKind::Throttling));
        assert_eq!(
            reply.body["embedding"],
            json!(embedding_vector("hi ", 1024, true))
        );
    }

    #[test]
    fn chat_models_are_rejected() {
        assert!(
            call(ModelFamily::Chat, json!({}))
                .unwrap_err()
                .contains("only for embedding models")
        );
    }
}
