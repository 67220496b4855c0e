//! The model list: Bedrock foundation models and inference profiles, filtered
//! by the allow-list, extended by aliases, cached and refreshed in the
//! background so that `/models` never waits on Bedrock once warm.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_bedrock::types::{
    FoundationModelLifecycleStatus, FoundationModelSummary, InferenceProfileStatus,
    InferenceProfileSummary, InferenceProfileType, InferenceType, ModelModality,
};

use crate::error::{ApiError, UpstreamError};
use crate::openai::Model;
use crate::translate::bedrock_error;

/// Which models are served, and under which extra names.
#[derive(Debug, Clone, Default)]
pub struct CatalogSettings {
    pub allow_patterns: Vec<String>,
    pub aliases: Vec<(String, String)>,
    pub retry_after_seconds: u64,
}

/// One immutable view of the model list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub models: Vec<Model>,
    /// Listed id -> the id Bedrock is called with.
    targets: HashMap<String, String>,
}

/// A model the client asked for, resolved for a Bedrock call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The id or ARN Bedrock is called with.
    pub bedrock_id: String,
    /// A bounded label for metrics.
    pub metric_label: String,
}

impl Snapshot {
    /// Adds a model unless its id is already listed (first one wins).
    fn add(&mut self, id: String, target: String, created: u64, owned_by: String) {
        if self.targets.contains_key(&id) {
            return;
        }
        self.targets.insert(id.clone(), target);
        self.models.push(Model {
            id,
            object: "model",
            created,
            owned_by,
        });
    }

    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|model| model.id == id)
    }

    pub fn target(&self, id: &str) -> Option<&str> {
        self.targets.get(id).map(String::as_str)
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

pub fn is_allowed(allow_patterns: &[String], id: &str) -> bool {
    allow_patterns.is_empty()
        || allow_patterns
            .iter()
            .any(|pattern| matches_pattern(pattern, id))
}

fn serves_text_on_demand(model: &FoundationModelSummary) -> bool {
    let active = model
        .model_lifecycle()
        .is_none_or(|lifecycle| lifecycle.status() == &FoundationModelLifecycleStatus::Active);
    let on_demand = model
        .inference_types_supported()
        .contains(&InferenceType::OnDemand);
    let text_out = model.output_modalities().contains(&ModelModality::Text);
    active && on_demand && text_out
}

/// The provider part of a model or profile id: `anthropic` for both
/// `anthropic.claude-3-haiku...` and `us.anthropic.claude-3-haiku...`.
fn provider_of(model_id: &str) -> String {
    let mut parts = model_id.split('.');
    let first = parts.next().unwrap_or_default();
    let is_region_prefix = matches!(
        first,
        "us" | "eu" | "apac" | "us-gov" | "ca" | "jp" | "au" | "global"
    );
    match (is_region_prefix, parts.next()) {
        (true, Some(provider)) => provider.to_owned(),
        _ if first.is_empty() => "bedrock".to_owned(),
        _ => first.to_owned(),
    }
}

fn model_id_of_arn(arn: &str) -> Option<&str> {
    arn.rsplit_once('/').map(|(_, id)| id)
}

/// Builds the served model list from Bedrock's answers. Pure.
pub fn build_snapshot(
    foundation_models: &[FoundationModelSummary],
    inference_profiles: &[InferenceProfileSummary],
    settings: &CatalogSettings,
    fetched_at: u64,
) -> Snapshot {
    let mut snapshot = Snapshot::default();

    for model in foundation_models
        .iter()
        .filter(|model| serves_text_on_demand(model))
    {
        if is_allowed(&settings.allow_patterns, model.model_id()) {
            let owned_by = model
                .provider_name()
                .map(|provider| provider.to_ascii_lowercase().replace(' ', "-"))
                .unwrap_or_else(|| provider_of(model.model_id()));
            snapshot.add(
                model.model_id().to_owned(),
                model.model_id().to_owned(),
                fetched_at,
                owned_by,
            );
        }
    }
    for profile in inference_profiles
        .iter()
        .filter(|profile| profile.status() == &InferenceProfileStatus::Active)
    {
        // Application profiles are invoked by ARN; system profiles by id.
        let id = match profile.r#type() {
            InferenceProfileType::Application => profile.inference_profile_arn(),
            _ => profile.inference_profile_id(),
        };
        if !is_allowed(&settings.allow_patterns, id) {
            continue;
        }
        let owned_by = match profile.r#type() {
            InferenceProfileType::Application => profile
                .models()
                .first()
                .and_then(|model| model.model_arn())
                .and_then(model_id_of_arn)
                .map(provider_of)
                .unwrap_or_else(|| "bedrock".to_owned()),
            _ => provider_of(id),
        };
        let created = profile
            .created_at()
            .and_then(|time| u64::try_from(time.secs()).ok())
            .unwrap_or(fetched_at);
        snapshot.add(id.to_owned(), id.to_owned(), created, owned_by);
    }
    for (alias, target) in &settings.aliases {
        let owned_by = snapshot
            .models
            .iter()
            .find(|model| &model.id == target)
            .map(|model| model.owned_by.clone())
            .unwrap_or_else(|| provider_of(target));
        snapshot.add(alias.clone(), target.clone(), fetched_at, owned_by);
    }
    snapshot
}

pub struct Catalog {
    client: aws_sdk_bedrock::Client,
    settings: CatalogSettings,
    current: RwLock<Option<Arc<Snapshot>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Catalog {
    pub fn new(client: aws_sdk_bedrock::Client, settings: CatalogSettings) -> Self {
        Self {
            client,
            settings,
            current: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The Bedrock id an alias stands for.
    pub fn alias(&self, name: &str) -> Option<&str> {
        self.settings
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map(|(_, target)| target.as_str())
    }

    pub fn allows(&self, model_id: &str) -> bool {
        is_allowed(&self.settings.allow_patterns, model_id)
    }

    pub fn cached(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|current| current.clone())
    }

    /// The cached list, fetching it first when the cache is still cold.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        if let Some(snapshot) = self.cached() {
            return Ok(snapshot);
        }
        let _guard = self.refresh_lock.lock().await;
        if let Some(snapshot) = self.cached() {
            return Ok(snapshot);
        }
        self.refresh_now().await.map_err(ApiError::Upstream)
    }

    /// Resolves the model a chat request names. When the list cannot be
    /// fetched (for example without list permissions), the name is passed
    /// through so that invocation still works.
    pub async fn resolve(&self, requested: &str) -> Result<ResolvedModel, ApiError> {
        if let Ok(snapshot) = self.snapshot().await {
            if let Some(target) = snapshot.target(requested) {
                return Ok(ResolvedModel {
                    bedrock_id: target.to_owned(),
                    metric_label: requested.to_owned(),
                });
            }
            return Err(ApiError::ModelNotFound(requested.to_owned()));
        }
        if let Some(target) = self.alias(requested) {
            return Ok(ResolvedModel {
                bedrock_id: target.to_owned(),
                metric_label: requested.to_owned(),
            });
        }
        if is_allowed(&self.settings.allow_patterns, requested) {
            return Ok(ResolvedModel {
                bedrock_id: requested.to_owned(),
                metric_label: "unlisted".to_owned(),
            });
        }
        Err(ApiError::ModelNotFound(requested.to_owned()))
    }

    pub async fn refresh_now(&self) -> Result<Arc<Snapshot>, UpstreamError> {
        let retry_after = self.settings.retry_after_seconds;
        let foundation = self
            .client
            .list_foundation_models()
            .by_output_modality(ModelModality::Text)
            .by_inference_type(InferenceType::OnDemand)
            .send()
            .await
            .map_err(|error| bedrock_error::from_sdk_error(&error, retry_after))?;
        let mut profiles = Vec::new();
        for profile_type in [
            InferenceProfileType::SystemDefined,
            InferenceProfileType::Application,
        ] {
            let mut next_token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_inference_profiles()
                    .type_equals(profile_type.clone())
                    .max_results(1000)
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .map_err(|error| bedrock_error::from_sdk_error(&error, retry_after))?;
                profiles.extend(page.inference_profile_summaries().iter().cloned());
                match page.next_token() {
                    Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                    _ => break,
                }
            }
        }
        let snapshot = Arc::new(build_snapshot(
            foundation.model_summaries(),
            &profiles,
            &self.settings,
            unix_now(),
        ));
        if let Ok(mut current) = self.current.write() {
            *current = Some(snapshot.clone());
        }
        tracing::info!(models = snapshot.models.len(), "model list refreshed");
        Ok(snapshot)
    }

    /// Keeps the list fresh; a failed refresh keeps serving the last list.
    pub fn spawn_refresher(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let wait = match self.refresh_now().await {
                    Ok(_) => every,
                    Err(error) => {
                        tracing::warn!(code = %error.code, message = %error.message, "model list refresh failed");
                        every.min(Duration::from_secs(15))
                    }
                };
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrock::types::{FoundationModelLifecycle, InferenceProfileModel};
    use aws_smithy_types::DateTime;

    fn foundation(
        id: &str,
        provider: &str,
        output: ModelModality,
        inference: InferenceType,
        status: FoundationModelLifecycleStatus,
    ) -> FoundationModelSummary {
        FoundationModelSummary::builder()
            .model_arn(format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"))
            .model_id(id)
            .provider_name(provider)
            .output_modalities(output)
            .inference_types_supported(inference)
            .model_lifecycle(
                FoundationModelLifecycle::builder()
                    .status(status)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn text_model(id: &str, provider: &str) -> FoundationModelSummary {
        foundation(
            id,
            provider,
            ModelModality::Text,
            InferenceType::OnDemand,
            FoundationModelLifecycleStatus::Active,
        )
    }

    fn profile(
        id: &str,
        arn: &str,
        kind: InferenceProfileType,
        model: &str,
    ) -> InferenceProfileSummary {
        InferenceProfileSummary::builder()
            .inference_profile_name(id)
            .inference_profile_id(id)
            .inference_profile_arn(arn)
            .models(
                InferenceProfileModel::builder()
                    .model_arn(format!(
                        "arn:aws:bedrock:us-east-1::foundation-model/{model}"
                    ))
                    .build(),
            )
            .status(InferenceProfileStatus::Active)
            .r#type(kind)
            .created_at(DateTime::from_secs(1_700_000_000))
            .build()
            .unwrap()
    }

    fn fixtures() -> (Vec<FoundationModelSummary>, Vec<InferenceProfileSummary>) {
        let models = vec![
            text_model("anthropic.claude-3-haiku-20240307-v1:0", "Anthropic"),
            text_model("amazon.nova-lite-v1:0", "Amazon"),
            foundation(
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                "Anthropic",
                ModelModality::Text,
                InferenceType::Provisioned,
                FoundationModelLifecycleStatus::Active,
            ),
            foundation(
                "anthropic.claude-v2",
                "Anthropic",
                ModelModality::Text,
                InferenceType::OnDemand,
                FoundationModelLifecycleStatus::Legacy,
            ),
            foundation(
                "amazon.titan-embed-text-v2:0",
                "Amazon",
                ModelModality::Embedding,
                InferenceType::OnDemand,
                FoundationModelLifecycleStatus::Active,
            ),
        ];
        let profiles = vec![
            profile(
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                InferenceProfileType::SystemDefined,
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
            ),
            profile(
                "abcd1234",
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234",
                InferenceProfileType::Application,
                "anthropic.claude-3-haiku-20240307-v1:0",
            ),
        ];
        (models, profiles)
    }

    fn ids(snapshot: &Snapshot) -> Vec<&str> {
        snapshot
            .models
            .iter()
            .map(|model| model.id.as_str())
            .collect()
    }

    #[test]
    fn patterns_match_like_globs() {
        let cases = [
            ("*", "anything", true),
            ("anthropic.*", "anthropic.claude", true),
            ("anthropic.*", "us.anthropic.claude", false),
            ("*claude*", "us.anthropic.claude-3", true),
            ("*-v1:0", "amazon.nova-lite-v1:0", true),
            ("*-v1:0", "amazon.nova-lite-v2:0", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            ("**", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                matches_pattern(pattern, text),
                expected,
                "{pattern} vs {text}"
            );
        }
        assert!(is_allowed(&[], "anything"));
    }

    #[test]
    fn only_active_on_demand_text_models_and_active_profiles_are_listed() {
        let (models, profiles) = fixtures();
        let snapshot = build_snapshot(&models, &profiles, &CatalogSettings::default(), 42);
        assert_eq!(
            ids(&snapshot),
            [
                "anthropic.claude-3-haiku-20240307-v1:0",
                "amazon.nova-lite-v1:0",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234",
            ]
        );
        let haiku = snapshot
            .get("anthropic.claude-3-haiku-20240307-v1:0")
            .unwrap();
        assert_eq!(
            (haiku.owned_by.as_str(), haiku.created, haiku.object),
            ("anthropic", 42, "model")
        );
        let profile = snapshot
            .get("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
            .unwrap();
        assert_eq!(
            (profile.owned_by.as_str(), profile.created),
            ("anthropic", 1_700_000_000)
        );
        let application = &snapshot.models[3];
        assert_eq!(application.owned_by, "anthropic");
    }

    #[test]
    fn allow_patterns_restrict_and_aliases_extend() {
        let (models, profiles) = fixtures();
        let settings = CatalogSettings {
            allow_patterns: vec!["us.*".into(), "amazon.*".into()],
            aliases: vec![
                (
                    "gpt-4o".into(),
                    "us.anthropic.claude-3-7-sonnet-20250219-v1:0".into(),
                ),
                ("amazon.nova-lite-v1:0".into(), "ignored-duplicate".into()),
            ],
            retry_after_seconds: 1,
        };
        let snapshot = build_snapshot(&models, &profiles, &settings, 1);
        assert_eq!(
            ids(&snapshot),
            [
                "amazon.nova-lite-v1:0",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "gpt-4o"
            ]
        );
        assert_eq!(
            snapshot.target("gpt-4o"),
            Some("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        );
        assert_eq!(snapshot.get("gpt-4o").unwrap().owned_by, "anthropic");
        assert_eq!(
            snapshot.target("amazon.nova-lite-v1:0"),
            Some("amazon.nova-lite-v1:0")
        );
        assert_eq!(
            snapshot.target("anthropic.claude-3-haiku-20240307-v1:0"),
            None
        );
    }

    #[test]
    fn providers_are_derived_from_ids() {
        assert_eq!(provider_of("us.meta.llama3-1-8b-instruct-v1:0"), "meta");
        assert_eq!(provider_of("eu.amazon.nova-pro-v1:0"), "amazon");
        assert_eq!(provider_of("mistral.mistral-large-2402-v1:0"), "mistral");
        assert_eq!(provider_of(""), "bedrock");
    }
}
