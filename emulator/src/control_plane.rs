//! Control-plane listings: ListFoundationModels, GetFoundationModel, ListInferenceProfiles and
//! GetInferenceProfile.

use serde_json::{Value, json};

use crate::catalog::{Catalog, FoundationModel, InferenceProfile};
use crate::clock::format_rfc3339;
use crate::error::{Error, ErrorKind};

const MAX_RESULTS_LIMIT: usize = 1000;
const NEXT_TOKEN_PREFIX: &str = "emu-offset-";

fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

fn enum_filter<'a>(
    query: &'a [(String, String)],
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, Error> {
    match query_value(query, key) {
        Some(value) if !allowed.contains(&value) => Err(Error::validation(format!(
            "1 validation error detected: Value '{value}' at '{key}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

fn model_summary(model: &FoundationModel, region: &str) -> Value {
    let mut summary = json!({
        "modelArn": model.arn(region),
        "modelId": model.id,
        "modelName": model.name,
        "providerName": model.provider,
        "inputModalities": model.input_modalities,
        "outputModalities": model.output_modalities,
        "customizationsSupported": model.customizations_supported,
        "inferenceTypesSupported": model.inference_types_supported,
        "modelLifecycle": { "status": model.lifecycle_status },
    });
    if let Some(streaming) = model.response_streaming_supported {
        summary["responseStreamingSupported"] = json!(streaming);
    }
    summary
}

/// `GET /foundation-models` with `byProvider`, `byCustomizationType`, `byOutputModality` and
/// `byInferenceType` filters.
pub fn list_foundation_models(
    catalog: &Catalog,
    query: &[(String, String)],
) -> Result<Value, Error> {
    let provider = query_value(query, "byProvider");
    let customization = enum_filter(
        query,
        "byCustomizationType",
        &["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"],
    )?;
    let modality = enum_filter(query, "byOutputModality", &["TEXT", "IMAGE", "EMBEDDING"])?;
    let inference = enum_filter(query, "byInferenceType", &["ON_DEMAND", "PROVISIONED"])?;
    let summaries: Vec<Value> = catalog
        .models
        .iter()
        .filter(|model| provider.is_none_or(|p| model.provider.eq_ignore_ascii_case(p)))
        .filter(|model| customization.is_none_or(|c| model.customizations_supported.contains(&c)))
        .filter(|model| modality.is_none_or(|m| model.output_modalities.contains(&m)))
        .filter(|model| inference.is_none_or(|i| model.inference_types_supported.contains(&i)))
        .map(|model| model_summary(model, &catalog.region))
        .collect();
    Ok(json!({ "modelSummaries": summaries }))
}

/// `GET /foundation-models/{modelIdentifier}`.
pub fn get_foundation_model(catalog: &Catalog, identifier: &str) -> Result<Value, Error> {
    let id = identifier
        .rsplit_once("foundation-model/")
        .map_or(identifier, |(_, id)| id);
    let model = catalog.model(id).ok_or_else(|| {
        Error::service(
            ErrorKind::ResourceNotFound,
            format!("Could not find model {identifier}."),
        )
    })?;
    Ok(json!({ "modelDetails": model_summary(model, &catalog.region) }))
}

fn profile_summary(profile: &InferenceProfile) -> Value {
    json!({
        "inferenceProfileName": profile.name,
        "description": profile.description,
        "createdAt": format_rfc3339(profile.created_at),
        "updatedAt": format_rfc3339(profile.updated_at),
        "inferenceProfileArn": profile.arn,
        "models": profile.model_arns.iter().map(|arn| json!({"modelArn": arn})).collect::<Vec<_>>(),
        "inferenceProfileId": profile.id,
        "status": "ACTIVE",
        "type": profile.profile_type.as_str(),
    })
}

fn parse_max_results(query: &[(String, String)]) -> Result<usize, Error> {
    let Some(raw) = query_value(query, "maxResults") else {
        return Ok(MAX_RESULTS_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(value) if (1..=MAX_RESULTS_LIMIT).contains(&value) => Ok(value),
        Ok(0) => Err(Error::validation(format!(
            "1 validation error detected: Value '{raw}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ))),
        Ok(_) => Err(Error::validation(format!(
            "1 validation error detected: Value '{raw}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {MAX_RESULTS_LIMIT}"
        ))),
        Err(_) => Err(Error::validation(format!(
            "Malformed input request: maxResults '{raw}' is not a number."
        ))),
    }
}

fn parse_next_token(query: &[(String, String)]) -> Result<usize, Error> {
    match query_value(query, "nextToken") {
        None => Ok(0),
        Some(token) => token
            .strip_prefix(NEXT_TOKEN_PREFIX)
            .and_then(|offset| offset.parse().ok())
            .ok_or_else(|| Error::validation("The pagination token is invalid.")),
    }
}

/// `GET /inference-profiles` with `type` (the SDK's name for `typeEquals`), `maxResults` and
/// `nextToken`.
pub fn list_inference_profiles(
    catalog: &Catalog,
    query: &[(String, String)],
) -> Result<Value, Error> {
    let allowed = ["SYSTEM_DEFINED", "APPLICATION"];
    let type_filter = match enum_filter(query, "type", &allowed)? {
        Some(value) => Some(value),
        None => enum_filter(query, "typeEquals", &allowed)?,
    };
    let max_results = parse_max_results(query)?;
    let offset = parse_next_token(query)?;
    let matching: Vec<&InferenceProfile> = catalog
        .profiles
        .iter()
        .filter(|profile| type_filter.is_none_or(|t| profile.profile_type.as_str() == t))
        .collect();
    if offset > matching.len() {
        return Err(Error::validation("The pagination token is invalid."));
    }
    let end = offset.saturating_add(max_results).min(matching.len());
    let page: Vec<Value> = matching[offset..end]
        .iter()
        .map(|profile| profile_summary(profile))
        .collect();
    let mut body = json!({ "inferenceProfileSummaries": page });
    if end < matching.len() {
        body["nextToken"] = json!(format!("{NEXT_TOKEN_PREFIX}{end}"));
    }
    Ok(body)
}

/// `GET /inference-profiles/{inferenceProfileIdentifier}`.
pub fn get_inference_profile(catalog: &Catalog, identifier: &str) -> Result<Value, Error> {
    catalog
        .profile(identifier)
        .map(profile_summary)
        .ok_or_else(|| {
            Error::service(
                ErrorKind::ResourceNotFound,
                format!("Inference profile {identifier} not found."),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::with_defaults("us-west-2")
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ids(body: &Value, list: &str, field: &str) -> Vec<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[field].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn lists_all_models_with_arns() {
        let body = list_foundation_models(&catalog(), &[]).unwrap();
        let summaries = body["modelSummaries"].as_array().unwrap();
        assert_eq!(summaries.len(), catalog().models.len());
        assert_eq!(
            summaries[0]["modelArn"],
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(summaries[0]["modelLifecycle"]["status"], "ACTIVE");
    }

    #[test]
    fn filters_models() {
        let embeddings =
            list_foundation_models(&catalog(), &query(&[("byOutputModality", "EMBEDDING")]))
                .unwrap();
        assert_eq!(ids(&embeddings, "modelSummaries", "modelId").len(), 5);
        let on_demand_anthropic = list_foundation_models(
            &catalog(),
            &query(&[
                ("byProvider", "anthropic"),
                ("byInferenceType", "ON_DEMAND"),
            ]),
        )
        .unwrap();
        let found = ids(&on_demand_anthropic, "modelSummaries", "modelId");
        assert!(!found.contains(&"anthropic.claude-3-7-sonnet-20250219-v1:0".to_string()));
        assert_eq!(found.len(), 3);
        let fine_tunable = list_foundation_models(
            &catalog(),
            &query(&[("byCustomizationType", "FINE_TUNING")]),
        )
        .unwrap();
        assert_eq!(ids(&fine_tunable, "modelSummaries", "modelId").len(), 3);
        let error = list_foundation_models(&catalog(), &query(&[("byOutputModality", "SOUND")]))
            .unwrap_err();
        assert!(
            error
                .as_service()
                .1
                .contains("enum value set: [TEXT, IMAGE, EMBEDDING]")
        );
    }

    #[test]
    fn paginates_profiles() {
        let catalog = catalog();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut pairs = vec![("maxResults".to_string(), "2".to_string())];
            if let Some(token) = &token {
                pairs.push(("nextToken".to_string(), token.clone()));
            }
            let body = list_inference_profiles(&catalog, &pairs).unwrap();
            seen.extend(ids(
                &body,
                "inferenceProfileSummaries",
                "inferenceProfileId",
            ));
            pages += 1;
            match body.get("nextToken").and_then(Value::as_str) {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        assert_eq!(seen.len(), catalog.profiles.len());
    }

    #[test]
    fn filters_profiles_by_type() {
        let body = list_inference_profiles(&catalog(), &query(&[("type", "APPLICATION")])).unwrap();
        assert_eq!(
            ids(&body, "inferenceProfileSummaries", "inferenceProfileId"),
            vec!["abcd1234efgh"]
        );
        let summary = &body["inferenceProfileSummaries"][0];
        assert_eq!(summary["createdAt"], "2025-01-01T00:00:00Z");
        assert_eq!(
            summary["inferenceProfileArn"],
            "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/abcd1234efgh"
        );
        let body = list_inference_profiles(&catalog(), &query(&[("typeEquals", "SYSTEM_DEFINED")]))
            .unwrap();
        assert_eq!(
            ids(&body, "inferenceProfileSummaries", "inferenceProfileId").len(),
            6
        );
    }

    #[test]
    fn rejects_bad_pagination() {
        for pairs in [
            query(&[("nextToken", "garbage")]),
            query(&[("nextToken", "emu-offset-99")]),
            query(&[("maxResults", "0")]),
            query(&[("maxResults", "1001")]),
            query(&[("maxResults", "many")]),
        ] {
            assert!(
                list_inference_profiles(&catalog(), &pairs).is_err(),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn gets_single_resources() {
        let model = get_foundation_model(&catalog(), "amazon.nova-pro-v1:0").unwrap();
        assert_eq!(model["modelDetails"]["modelName"], "Nova Pro");
        assert!(get_foundation_model(&catalog(), "nope").is_err());
        let profile = get_inference_profile(&catalog(), "us.amazon.nova-lite-v1:0").unwrap();
        assert_eq!(profile["type"], "SYSTEM_DEFINED");
        assert_eq!(
            get_inference_profile(&catalog(), "nope")
                .unwrap_err()
                .as_service()
                .0,
            ErrorKind::ResourceNotFound
        );
    }
}
