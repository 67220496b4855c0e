//! AWS SDK configuration: credentials, region and endpoints come from the
//! pod's environment through aws-config's standard provider chain (IRSA web
//! identity, EKS Pod Identity, ...), never from flags; an optional chained
//! role is assumed on top of them. The SDK caches the credentials and
//! refreshes them before they expire (re-reading the web identity token file
//! or the Pod Identity token file on every refresh).

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use crate::assume_role::AssumeRole;
use crate::config::Config;

pub async fn load_sdk_config(region: Option<String>, max_attempts: u32) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// The SDK configuration the gateway runs with: the default chain for the
/// region from the flags (or the standard variables), with the chained role
/// on top when one is configured.
pub async fn load_gateway_sdk_config(config: &Config) -> Result<SdkConfig, String> {
    let chained_role = AssumeRole::from_config(config)?;
    let base = load_sdk_config(config.region.clone(), config.bedrock_max_attempts).await;
    let Some(region) = base.region().map(|region| region.to_string()) else {
        return Err("no AWS region: set --region, BEDROCK_GATEWAY_REGION or AWS_REGION".into());
    };
    tracing::info!(
        region,
        source = credential_source(|name| std::env::var_os(name).is_some()),
        "AWS credentials from the default provider chain"
    );
    Ok(match chained_role {
        Some(role) => {
            tracing::info!(
                role_arn = %role.role_arn,
                session_name = %role.session_name,
                external_id = role.external_id.is_some(),
                "assuming a chained role with the pod's credentials"
            );
            role.chain_onto(&base).await
        }
        None => base,
    })
}

/// The provider the default chain will use, by the variables that select it
/// (in the chain's order), for the startup log.
pub fn credential_source(is_set: impl Fn(&str) -> bool) -> &'static str {
    if is_set("AWS_ACCESS_KEY_ID") {
        "environment access keys"
    } else if is_set("AWS_ROLE_ARN") && is_set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "web identity (IRSA)"
    } else if is_set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        "container credentials endpoint (EKS Pod Identity)"
    } else if is_set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        "container credentials endpoint (ECS)"
    } else {
        "shared config files or instance metadata"
    }
}

/// The Bedrock clients the gateway uses, built from one SDK configuration.
#[derive(Clone, Debug)]
pub struct BedrockClients {
    pub runtime: aws_sdk_bedrockruntime::Client,
    pub control: aws_sdk_bedrock::Client,
}

impl BedrockClients {
    pub fn new(sdk_config: &SdkConfig) -> Self {
        Self {
            runtime: aws_sdk_bedrockruntime::Client::new(sdk_config),
            control: aws_sdk_bedrock::Client::new(sdk_config),
        }
    }
}

/// Answers "can the gateway obtain AWS credentials?" for the readiness probe
/// without asking the provider (possibly STS) on every probe: a success is
/// remembered until shortly before the credentials expire.
#[derive(Debug)]
pub struct CredentialsCheck {
    provider: Option<SharedCredentialsProvider>,
    valid_until: Mutex<Option<SystemTime>>,
}

const RECHECK_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const STATIC_RECHECK: Duration = Duration::from_secs(300);

impl CredentialsCheck {
    pub fn new(sdk_config: &SdkConfig) -> Self {
        Self {
            provider: sdk_config.credentials_provider(),
            valid_until: Mutex::new(None),
        }
    }

    pub async fn check(&self) -> Result<(), String> {
        let Some(provider) = &self.provider else {
            return Err("no AWS credentials provider is configured".into());
        };
        let mut valid_until = self.valid_until.lock().await;
        if valid_until.is_some_and(|until| until > SystemTime::now()) {
            return Ok(());
        }
        let credentials =
            tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials())
                .await
                .map_err(|_| "timed out obtaining AWS credentials".to_owned())?
                .map_err(|error| {
                    format!("cannot obtain AWS credentials: {}", error_chain(&error))
                })?;
        let now = SystemTime::now();
        *valid_until = Some(match credentials.expiry() {
            Some(expiry) => expiry.checked_sub(RECHECK_BEFORE_EXPIRY).unwrap_or(now),
            None => now + STATIC_RECHECK,
        });
        Ok(())
    }
}

/// An error and its sources on one line, each message once: short enough for
/// a probe's answer, unlike the debug rendering of the SDK's errors.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let message = error.to_string();
        if !message.is_empty() && !messages.iter().any(|seen| seen.contains(&message)) {
            messages.push(message);
        }
        current = error.source();
    }
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(message: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            message,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn error_chains_read_on_one_line_without_repeats() {
        let error = layer(
            "an error occurred while loading credentials",
            Some(layer(
                "service error",
                Some(layer(
                    "unhandled error (AccessDenied)",
                    Some(layer("AccessDenied", None)),
                )),
            )),
        );
        assert_eq!(
            error_chain(&error),
            "an error occurred while loading credentials: service error: unhandled error (AccessDenied)"
        );
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }

    #[test]
    fn credential_source_follows_the_default_chain_order() {
        let source = |set: &[&str]| credential_source(|name| set.contains(&name));
        assert_eq!(
            source(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]),
            "web identity (IRSA)"
        );
        assert_eq!(
            source(&[
                "AWS_ACCESS_KEY_ID",
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE"
            ]),
            "environment access keys"
        );
        assert_eq!(
            source(&["AWS_ROLE_ARN"]),
            "shared config files or instance metadata"
        );
        assert_eq!(
            source(&["AWS_CONTAINER_CREDENTIALS_FULL_URI"]),
            "container credentials endpoint (EKS Pod Identity)"
        );
        assert_eq!(
            source(&["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]),
            "container credentials endpoint (ECS)"
        );
    }
}
