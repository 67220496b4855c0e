//! AWS SDK configuration: credentials, region and endpoints come from the
//! pod's environment through aws-config's standard provider chain (IRSA web
//! identity, EKS Pod Identity, ...), never from flags.

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

pub async fn load_sdk_config(region: Option<String>, max_attempts: u32) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
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
                    format!(
                        "cannot obtain AWS credentials: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(&error)
                    )
                })?;
        let now = SystemTime::now();
        *valid_until = Some(match credentials.expiry() {
            Some(expiry) => expiry.checked_sub(RECHECK_BEFORE_EXPIRY).unwrap_or(now),
            None => now + STATIC_RECHECK,
        });
        Ok(())
    }
}
