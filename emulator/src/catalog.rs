//! The default foundation models and inference profiles, and model-identifier resolution.

use crate::error::Error;

/// Account that owns the emulated application inference profiles.
pub const ACCOUNT_ID: &str = "123456789012";

/// How a model answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    Chat,
    TitanEmbedV1,
    TitanEmbedV2,
    CohereEmbedV3,
    CohereEmbedV4,
    Image,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundationModel {
    pub id: &'static str,
    pub name: &'static str,
    pub provider: &'static str,
    pub input_modalities: &'static [&'static str],
    pub output_modalities: &'static [&'static str],
    pub response_streaming_supported: Option<bool>,
    pub customizations_supported: &'static [&'static str],
    pub inference_types_supported: &'static [&'static str],
    pub lifecycle_status: &'static str,
    pub family: ModelFamily,
}

impl FoundationModel {
    pub fn arn(&self, region: &str) -> String {
        format!("arn:aws:bedrock:{region}::foundation-model/{}", self.id)
    }

    pub fn supports_on_demand(&self) -> bool {
        self.inference_types_supported.contains(&"ON_DEMAND")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileType {
    SystemDefined,
    Application,
}

impl ProfileType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileType::SystemDefined => "SYSTEM_DEFINED",
            ProfileType::Application => "APPLICATION",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceProfile {
    pub id: String,
    pub name: String,
    pub description: String,
    pub arn: String,
    pub model_id: &'static str,
    pub model_arns: Vec<String>,
    pub profile_type: ProfileType,
    pub created_at: i64,
    pub updated_at: i64,
}

const TEXT: &[&str] = &["TEXT"];
const TEXT_IMAGE: &[&str] = &["TEXT", "IMAGE"];
const TEXT_IMAGE_VIDEO: &[&str] = &["TEXT", "IMAGE", "VIDEO"];
const EMBEDDING: &[&str] = &["EMBEDDING"];
const IMAGE: &[&str] = &["IMAGE"];
const NONE: &[&str] = &[];
const ON_DEMAND: &[&str] = &["ON_DEMAND"];
const ON_DEMAND_AND_PROFILE: &[&str] = &["ON_DEMAND", "INFERENCE_PROFILE"];
const PROFILE_ONLY: &[&str] = &["INFERENCE_PROFILE"];

const fn model(
    id: &'static str,
    name: &'static str,
    provider: &'static str,
    input_modalities: &'static [&'static str],
    output_modalities: &'static [&'static str],
    inference_types_supported: &'static [&'static str],
    family: ModelFamily,
) -> FoundationModel {
    let streams = matches!(family, ModelFamily::Chat);
    FoundationModel {
        id,
        name,
        provider,
        input_modalities,
        output_modalities,
        response_streaming_supported: if streams { Some(true) } else { None },
        customizations_supported: NONE,
        inference_types_supported,
        lifecycle_status: "ACTIVE",
        family,
    }
}

fn default_models() -> Vec<FoundationModel> {
    use ModelFamily::*;
    let mut models = vec![
        model(
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "Claude 3.5 Sonnet",
            "Anthropic",
            TEXT_IMAGE,
            TEXT,
            ON_DEMAND_AND_PROFILE,
            Chat,
        ),
        FoundationModel {
            customizations_supported: &["FINE_TUNING"],
            ..model(
                "anthropic.claude-3-haiku-20240307-v1:0",
                "Claude 3 Haiku",
                "Anthropic",
                TEXT_IMAGE,
                TEXT,
                ON_DEMAND_AND_PROFILE,
                Chat,
            )
        },
        model(
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "Claude 3.7 Sonnet",
            "Anthropic",
            TEXT_IMAGE,
            TEXT,
            PROFILE_ONLY,
            Chat,
        ),
        FoundationModel {
            customizations_supported: &["FINE_TUNING", "DISTILLATION"],
            ..model(
                "amazon.nova-lite-v1:0",
                "Nova Lite",
                "Amazon",
                TEXT_IMAGE_VIDEO,
                TEXT,
                ON_DEMAND_AND_PROFILE,
                Chat,
            )
        },
        FoundationModel {
            customizations_supported: &["FINE_TUNING", "DISTILLATION"],
            ..model(
                "amazon.nova-pro-v1:0",
                "Nova Pro",
                "Amazon",
                TEXT_IMAGE_VIDEO,
                TEXT,
                ON_DEMAND_AND_PROFILE,
                Chat,
            )
        },
        model(
            "amazon.nova-2-lite-v1:0",
            "Nova 2 Lite",
            "Amazon",
            TEXT_IMAGE_VIDEO,
            TEXT,
            PROFILE_ONLY,
            Chat,
        ),
        model(
            "openai.gpt-oss-20b-1:0",
            "gpt-oss-20b",
            "OpenAI",
            TEXT,
            TEXT,
            ON_DEMAND,
            Chat,
        ),
        model(
            "meta.llama3-1-8b-instruct-v1:0",
            "Llama 3.1 8B Instruct",
            "Meta",
            TEXT,
            TEXT,
            ON_DEMAND,
            Chat,
        ),
        model(
            "mistral.mistral-large-2402-v1:0",
            "Mistral Large (24.02)",
            "Mistral AI",
            TEXT,
            TEXT,
            ON_DEMAND,
            Chat,
        ),
        model(
            "amazon.titan-embed-text-v1",
            "Titan Embeddings G1 - Text",
            "Amazon",
            TEXT,
            EMBEDDING,
            ON_DEMAND,
            TitanEmbedV1,
        ),
        model(
            "amazon.titan-embed-text-v2:0",
            "Titan Text Embeddings V2",
            "Amazon",
            TEXT,
            EMBEDDING,
            ON_DEMAND,
            TitanEmbedV2,
        ),
        model(
            "cohere.embed-english-v3",
            "Embed English",
            "Cohere",
            TEXT,
            EMBEDDING,
            ON_DEMAND,
            CohereEmbedV3,
        ),
        model(
            "cohere.embed-multilingual-v3",
            "Embed Multilingual",
            "Cohere",
            TEXT,
            EMBEDDING,
            ON_DEMAND,
            CohereEmbedV3,
        ),
        model(
            "cohere.embed-v4:0",
            "Embed v4",
            "Cohere",
            TEXT_IMAGE,
            EMBEDDING,
            ON_DEMAND,
            CohereEmbedV4,
        ),
        model(
            "stability.sd3-large-v1:0",
            "SD3 Large 1.0",
            "Stability AI",
            TEXT_IMAGE,
            IMAGE,
            ON_DEMAND,
            Image,
        ),
    ];
    models.push(FoundationModel {
        lifecycle_status: "LEGACY",
        ..model(
            "anthropic.claude-v2:1",
            "Claude",
            "Anthropic",
            TEXT,
            TEXT,
            ON_DEMAND,
            Chat,
        )
    });
    models
}

/// Regions a `us.` cross-region profile routes to.
const US_REGIONS: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];
const PROFILE_CREATED_AT: i64 = 1_724_371_200; // 2024-08-23T00:00:00Z
const APPLICATION_PROFILE_CREATED_AT: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z
pub const APPLICATION_PROFILE_ID: &str = "abcd1234efgh";

fn default_profiles(region: &str) -> Vec<InferenceProfile> {
    let system = [
        (
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "US Anthropic Claude 3.5 Sonnet",
        ),
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            "US Anthropic Claude 3 Haiku",
        ),
        (
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "US Anthropic Claude 3.7 Sonnet",
        ),
        ("amazon.nova-lite-v1:0", "US Nova Lite"),
        ("amazon.nova-pro-v1:0", "US Nova Pro"),
        ("amazon.nova-2-lite-v1:0", "US Nova 2 Lite"),
    ];
    let mut profiles: Vec<InferenceProfile> = system
        .into_iter()
        .map(|(model_id, name)| {
            let id = format!("us.{model_id}");
            InferenceProfile {
                arn: format!("arn:aws:bedrock:{region}:{ACCOUNT_ID}:inference-profile/{id}"),
                id,
                name: name.to_string(),
                description: format!("Routes requests to {name} in {}.", US_REGIONS.join(", ")),
                model_id,
                model_arns: US_REGIONS
                    .iter()
                    .map(|r| format!("arn:aws:bedrock:{r}::foundation-model/{model_id}"))
                    .collect(),
                profile_type: ProfileType::SystemDefined,
                created_at: PROFILE_CREATED_AT,
                updated_at: PROFILE_CREATED_AT,
            }
        })
        .collect();
    let haiku = "anthropic.claude-3-haiku-20240307-v1:0";
    profiles.push(InferenceProfile {
        id: APPLICATION_PROFILE_ID.to_string(),
        name: "team-haiku".to_string(),
        description: "Application profile tracking one team's Claude 3 Haiku usage.".to_string(),
        arn: format!(
            "arn:aws:bedrock:{region}:{ACCOUNT_ID}:application-inference-profile/{APPLICATION_PROFILE_ID}"
        ),
        model_id: haiku,
        model_arns: vec![format!("arn:aws:bedrock:{region}::foundation-model/{haiku}")],
        profile_type: ProfileType::Application,
        created_at: APPLICATION_PROFILE_CREATED_AT,
        updated_at: APPLICATION_PROFILE_CREATED_AT,
    });
    profiles
}

pub const INVALID_MODEL_IDENTIFIER: &str = "The provided model identifier is invalid.";

/// Foundation models and inference profiles served by one emulator.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub region: String,
    pub models: Vec<FoundationModel>,
    pub profiles: Vec<InferenceProfile>,
}

impl Catalog {
    pub fn with_defaults(region: &str) -> Catalog {
        Catalog {
            region: region.to_string(),
            models: default_models(),
            profiles: default_profiles(region),
        }
    }

    pub fn model(&self, id: &str) -> Option<&FoundationModel> {
        self.models.iter().find(|model| model.id == id)
    }

    pub fn profile(&self, id_or_arn: &str) -> Option<&InferenceProfile> {
        self.profiles
            .iter()
            .find(|profile| profile.id == id_or_arn || profile.arn == id_or_arn)
    }

    /// Resolves the `modelId` of a runtime call to the foundation model that will answer it.
    pub fn resolve_for_invocation(&self, identifier: &str) -> Result<&FoundationModel, Error> {
        let invalid = || Error::validation(INVALID_MODEL_IDENTIFIER);
        if let Some(resource) = identifier.strip_prefix("arn:") {
            let parts: Vec<&str> = resource.splitn(5, ':').collect();
            let [_partition, service, _region, _account, resource] = parts.as_slice() else {
                return Err(invalid());
            };
            if *service != "bedrock" {
                return Err(invalid());
            }
            let (kind, id) = resource.split_once('/').ok_or_else(invalid)?;
            return match kind {
                "foundation-model" => self.on_demand_model(id),
                "inference-profile" | "application-inference-profile" => self
                    .profiles
                    .iter()
                    .find(|profile| {
                        profile.id == id && profile.arn.ends_with(&format!(":{resource}"))
                    })
                    .and_then(|profile| self.model(profile.model_id))
                    .ok_or_else(invalid),
                _ => Err(invalid()),
            };
        }
        if let Some(profile) = self
            .profiles
            .iter()
            .find(|profile| profile.id == identifier)
        {
            return self.model(profile.model_id).ok_or_else(invalid);
        }
        self.on_demand_model(identifier)
    }

    fn on_demand_model(&self, id: &str) -> Result<&FoundationModel, Error> {
        let model = self
            .model(id)
            .ok_or_else(|| Error::validation(INVALID_MODEL_IDENTIFIER))?;
        if !model.supports_on_demand() {
            return Err(Error::validation(format!(
                "Invocation of model ID {id} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
            )));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn catalog() -> Catalog {
        Catalog::with_defaults("us-east-1")
    }

    fn resolved(identifier: &str) -> Result<&'static str, String> {
        catalog()
            .resolve_for_invocation(identifier)
            .map(|model| model.id)
            .map_err(|error| error.as_service().1)
    }

    #[test]
    fn resolves_ids_profiles_and_arns() {
        let sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        assert_eq!(resolved(sonnet), Ok(sonnet));
        assert_eq!(resolved(&format!("us.{sonnet}")), Ok(sonnet));
        assert_eq!(
            resolved(&format!(
                "arn:aws:bedrock:us-east-1::foundation-model/{sonnet}"
            )),
            Ok(sonnet)
        );
        assert_eq!(
            resolved(&format!(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{sonnet}"
            )),
            Ok(sonnet)
        );
        assert_eq!(
            resolved(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
            ),
            Ok("anthropic.claude-3-haiku-20240307-v1:0")
        );
    }

    #[test]
    fn profile_only_models_need_a_profile() {
        let id = "anthropic.claude-3-7-sonnet-20250219-v1:0";
        let message = resolved(id).unwrap_err();
        assert!(message.starts_with(&format!(
            "Invocation of model ID {id} with on-demand throughput isn't supported."
        )));
        assert_eq!(resolved(&format!("us.{id}")), Ok(id));
    }

    #[test]
    fn unknown_identifiers_are_invalid() {
        for identifier in [
            "nope",
            "",
            "arn:aws:bedrock",
            "arn:aws:s3:us-east-1::foundation-model/amazon.nova-lite-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/abcd1234efgh",
            "arn:aws:bedrock:us-east-1:123456789012:custom-model/x",
        ] {
            let error = catalog().resolve_for_invocation(identifier).unwrap_err();
            assert_eq!(
                error.as_service(),
                (ErrorKind::Validation, INVALID_MODEL_IDENTIFIER.to_string()),
                "{identifier}"
            );
        }
    }

    #[test]
    fn catalog_has_the_expected_shape() {
        let catalog = catalog();
        assert_eq!(
            catalog
                .models
                .iter()
                .filter(|m| m.lifecycle_status == "LEGACY")
                .count(),
            1
        );
        assert!(catalog.models.iter().any(|m| m.output_modalities == IMAGE));
        assert_eq!(
            catalog
                .models
                .iter()
                .filter(|m| m.output_modalities == EMBEDDING)
                .count(),
            5
        );
        assert!(
            catalog
                .profiles
                .iter()
                .all(|p| catalog.model(p.model_id).is_some())
        );
        assert_eq!(
            catalog
                .profiles
                .iter()
                .filter(|p| p.profile_type == ProfileType::Application)
                .count(),
            1
        );
    }
}
