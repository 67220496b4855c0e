//! What every request handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;

use crate::auth::ApiKeys;
use crate::bedrock::{BedrockClients, CredentialsCheck};
use crate::catalog::{Catalog, CatalogSettings};
use crate::config::Config;
use crate::image_fetch::ImageFetcher;
use crate::key_limits::{KeyLimiter, KeyLimits};
use crate::metrics::Metrics;
use crate::translate::guardrail::Guardrail;
use crate::translate::request::TranslationSettings;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub retry_after_seconds: u64,
    pub stream_idle_timeout: Duration,
}

pub struct AppState {
    pub clients: BedrockClients,
    pub catalog: Arc<Catalog>,
    pub keys: ApiKeys,
    /// Per-key limits; `None` when none is configured.
    pub key_limiter: Option<Arc<KeyLimiter>>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub credentials: CredentialsCheck,
    pub translation: TranslationSettings,
    pub guardrail: Option<Guardrail>,
    pub images: ImageFetcher,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(config: &Config, sdk_config: &SdkConfig, metrics: Metrics) -> Self {
        let clients = BedrockClients::new(sdk_config);
        let catalog = Arc::new(Catalog::new(
            clients.control.clone(),
            CatalogSettings {
                allow_patterns: config.model_allow.clone(),
                aliases: config.model_aliases.clone(),
                retry_after_seconds: config.retry_after_seconds,
            },
        ));
        let keys = ApiKeys::new(&config.api_keys, config.api_keys_file.clone());
        metrics.api_keys_loaded.set(keys.len() as i64);
        let images =
            ImageFetcher::new(config.image_fetch_settings(), metrics.image_fetches.clone());
        Self {
            clients,
            catalog,
            keys,
            key_limiter: KeyLimiter::new(KeyLimits::from_flags(
                config.key_requests_per_minute,
                config.key_max_concurrent_streams,
                Duration::from_secs(config.retry_after_seconds),
            )),
            metrics,
            limits: Limits {
                max_body_bytes: config.max_body_bytes,
                body_timeout: Duration::from_secs(config.body_timeout_seconds.max(1)),
                retry_after_seconds: config.retry_after_seconds,
                stream_idle_timeout: Duration::from_secs(config.stream_idle_timeout_seconds.max(1)),
            },
            credentials: CredentialsCheck::new(sdk_config),
            translation: TranslationSettings {
                prompt_caching: config.prompt_caching,
            },
            guardrail: Guardrail::from_flags(
                config.guardrail_id.as_deref(),
                config.guardrail_version.as_deref(),
                config.guardrail_trace,
            ),
            images,
            draining: AtomicBool::new(false),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
