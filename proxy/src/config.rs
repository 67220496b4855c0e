//! Command-line flags and their environment variables.
//!
//! The pod's AWS credentials and endpoints deliberately have no flags: the
//! standard AWS variables (`AWS_REGION`, `AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, ...) are read by aws-config exactly as
//! every AWS SDK reads them. Only the optional chained role (a second role
//! assumed on top of the pod's, e.g. in the account that has Bedrock) and the
//! region have flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::ApiError;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "bedrock-gateway-proxy",
    version,
    about = "OpenAI-compatible API in front of Amazon Bedrock"
)]
pub struct Config {
    /// Address the OpenAI-compatible API listens on.
    #[arg(long, env = "BEDROCK_GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address the Prometheus `/metrics` endpoint listens on.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// AWS region for Bedrock; defaults to the standard AWS region settings.
    #[arg(long, env = "BEDROCK_GATEWAY_REGION")]
    pub region: Option<String>,

    /// IAM role to assume on top of the pod's credentials, for Bedrock in another account.
    #[arg(long, env = "BEDROCK_GATEWAY_ASSUME_ROLE_ARN")]
    pub assume_role_arn: Option<String>,

    /// External id the chained role's trust policy requires.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_ASSUME_ROLE_EXTERNAL_ID",
        hide_env_values = true
    )]
    pub assume_role_external_id: Option<String>,

    /// Session name of the chained role (shows in CloudTrail and in the assumed-role ARN).
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_ASSUME_ROLE_SESSION_NAME",
        default_value = crate::assume_role::DEFAULT_SESSION_NAME
    )]
    pub assume_role_session_name: String,

    /// File holding API keys, one per line (`#` comments allowed); re-read when it changes.
    #[arg(long, env = "BEDROCK_GATEWAY_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// API keys, comma-separated (prefer the file, mounted from a Secret).
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// How often the API keys file is checked for changes, in seconds.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_API_KEYS_RELOAD_SECONDS",
        default_value_t = 5
    )]
    pub api_keys_reload_seconds: u64,

    /// Requests per minute each API key may make (a burst of up to this many,
    /// then one every 60/N seconds); 0 means no limit.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_KEY_REQUESTS_PER_MINUTE",
        default_value_t = 0
    )]
    pub key_requests_per_minute: u32,

    /// Streaming completions each API key may have open at once; 0 means no limit.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_KEY_MAX_CONCURRENT_STREAMS",
        default_value_t = 0
    )]
    pub key_max_concurrent_streams: u32,

    /// Only models whose id matches one of these patterns (`*` wildcard) are served.
    #[arg(
        long = "model-allow",
        env = "BEDROCK_GATEWAY_MODEL_ALLOW",
        value_delimiter = ','
    )]
    pub model_allow: Vec<String>,

    /// Extra model names, `alias=bedrock-model-id`, comma-separated.
    #[arg(long = "model-alias", env = "BEDROCK_GATEWAY_MODEL_ALIASES", value_delimiter = ',', value_parser = parse_alias)]
    pub model_aliases: Vec<(String, String)>,

    /// How long the model list is served before it is refreshed in the background, in seconds.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_MODELS_REFRESH_SECONDS",
        default_value_t = 300
    )]
    pub models_refresh_seconds: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BEDROCK_GATEWAY_MAX_BODY_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time a client has to send its whole request body, in seconds (408 after it).
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_BODY_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub body_timeout_seconds: u64,

    /// Insert Bedrock prompt-cache points for models that support them
    /// (a request can override this with `"prompt_caching": true|false`).
    #[arg(long, env = "BEDROCK_GATEWAY_PROMPT_CACHING", default_value_t = false)]
    pub prompt_caching: bool,

    /// Bedrock guardrail applied to every chat completion (id or ARN).
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_GUARDRAIL_ID",
        requires = "guardrail_version"
    )]
    pub guardrail_id: Option<String>,

    /// Version of the guardrail: `DRAFT` or a number.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_GUARDRAIL_VERSION",
        requires = "guardrail_id"
    )]
    pub guardrail_version: Option<String>,

    /// Ask Bedrock for the guardrail trace (visible in Bedrock logs).
    #[arg(long, env = "BEDROCK_GATEWAY_GUARDRAIL_TRACE", default_value_t = false)]
    pub guardrail_trace: bool,

    /// Seconds a client is told to wait (Retry-After) when Bedrock throttles.
    #[arg(long, env = "BEDROCK_GATEWAY_RETRY_AFTER_SECONDS", default_value_t = 2)]
    pub retry_after_seconds: u64,

    /// Attempts the AWS SDK makes for a Bedrock call (1 disables retries).
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_BEDROCK_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub bedrock_max_attempts: u32,

    /// Seconds a stream may wait for Bedrock's next event before it is ended with an error.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_STREAM_IDLE_TIMEOUT_SECONDS",
        default_value_t = 120
    )]
    pub stream_idle_timeout_seconds: u64,

    /// Seconds in-flight requests and streams may take to finish after SIGTERM.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 30
    )]
    pub shutdown_grace_seconds: u64,

    /// HTTP worker threads; 0 means one per CPU.
    #[arg(long, env = "BEDROCK_GATEWAY_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Fetch `image_url` parts with http(s) URLs (`false`: only `data:` URLs are accepted).
    #[arg(long, env = "BEDROCK_GATEWAY_IMAGE_URL_FETCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub image_url_fetch: bool,

    /// Largest image fetched from a URL, in bytes (Bedrock's per-image limit by default).
    #[arg(long, env = "BEDROCK_GATEWAY_IMAGE_URL_MAX_BYTES", default_value_t = crate::image_fetch::DEFAULT_MAX_IMAGE_BYTES)]
    pub image_url_max_bytes: usize,

    /// Most bytes fetched from image URLs for one request.
    #[arg(long, env = "BEDROCK_GATEWAY_IMAGE_URL_MAX_REQUEST_BYTES", default_value_t = crate::image_fetch::DEFAULT_MAX_REQUEST_BYTES)]
    pub image_url_max_request_bytes: usize,

    /// Most image URLs fetched for one request.
    #[arg(long, env = "BEDROCK_GATEWAY_IMAGE_URL_MAX_PER_REQUEST", default_value_t = crate::image_fetch::DEFAULT_MAX_IMAGES_PER_REQUEST)]
    pub image_url_max_per_request: usize,

    /// Time one image fetch may take in total (redirects included), in seconds.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_IMAGE_URL_TIMEOUT_SECONDS",
        default_value_t = 15
    )]
    pub image_url_timeout_seconds: u64,

    /// Time a connection to an image host may take, in seconds.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_IMAGE_URL_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 5
    )]
    pub image_url_connect_timeout_seconds: u64,

    /// Redirects followed per image URL.
    #[arg(
        long,
        env = "BEDROCK_GATEWAY_IMAGE_URL_MAX_REDIRECTS",
        default_value_t = 3
    )]
    pub image_url_max_redirects: usize,

    /// Networks image URLs may reach although they are not public (loopback,
    /// private, link-local, ...), comma-separated CIDRs, e.g. `10.20.0.0/16`.
    #[arg(
        long = "image-url-allow-cidr",
        env = "BEDROCK_GATEWAY_IMAGE_URL_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    pub image_url_allow_cidrs: Vec<crate::image_fetch::Cidr>,

    /// Log format.
    #[arg(long, env = "BEDROCK_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl Config {
    pub fn models_refresh_interval(&self) -> Duration {
        Duration::from_secs(self.models_refresh_seconds.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    pub fn image_fetch_settings(&self) -> crate::image_fetch::FetchSettings {
        crate::image_fetch::FetchSettings {
            enabled: self.image_url_fetch,
            max_image_bytes: self.image_url_max_bytes,
            max_request_bytes: self.image_url_max_request_bytes,
            max_images: self.image_url_max_per_request,
            timeout: Duration::from_secs(self.image_url_timeout_seconds.max(1)),
            connect_timeout: Duration::from_secs(self.image_url_connect_timeout_seconds.max(1)),
            max_redirects: self.image_url_max_redirects,
            allowed: self.image_url_allow_cidrs.clone(),
        }
    }
}

fn parse_alias(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((alias, target)) if !alias.trim().is_empty() && !target.trim().is_empty() => {
            Ok((alias.trim().to_owned(), target.trim().to_owned()))
        }
        _ => Err(format!("expected alias=bedrock-model-id, got '{value}'")),
    }
}

/// Checks the values clap cannot check on its own.
pub fn validate(config: &Config) -> Result<(), ApiError> {
    if config.api_keys_file.is_none() && config.api_keys.iter().all(|key| key.trim().is_empty()) {
        return Err(ApiError::Internal(
            "no API keys configured: set --api-keys-file or BEDROCK_GATEWAY_API_KEYS".into(),
        ));
    }
    if config.bedrock_max_attempts == 0 {
        return Err(ApiError::Internal(
            "--bedrock-max-attempts must be at least 1".into(),
        ));
    }
    crate::assume_role::AssumeRole::from_config(config).map_err(ApiError::Internal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let config = Config::try_parse_from([
            "proxy",
            "--api-keys",
            "a,b",
            "--model-alias",
            "gpt-4o=anthropic.claude-3-5-sonnet-20240620-v1:0,fast=amazon.nova-lite-v1:0",
            "--model-allow",
            "anthropic.*,us.*",
        ])
        .unwrap();
        assert_eq!(config.api_keys, ["a", "b"]);
        assert_eq!(
            config.model_aliases,
            [
                (
                    "gpt-4o".to_owned(),
                    "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned()
                ),
                ("fast".to_owned(), "amazon.nova-lite-v1:0".to_owned())
            ]
        );
        assert_eq!(config.model_allow, ["anthropic.*", "us.*"]);
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.metrics_listen.port(), 9090);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.assume_role_arn, None);
        assert_eq!(config.assume_role_session_name, "bedrock-gateway-proxy");
        assert_eq!(
            config.key_requests_per_minute, 0,
            "per-key limits are off by default"
        );
        assert_eq!(config.key_max_concurrent_streams, 0);
        assert!(validate(&config).is_ok());
    }

    #[test]
    fn image_url_flags_parse_into_fetch_settings() {
        let defaults = Config::try_parse_from(["proxy", "--api-keys", "k"])
            .unwrap()
            .image_fetch_settings();
        assert!(defaults.enabled);
        assert_eq!(defaults.max_image_bytes, 3_932_160);
        assert_eq!(defaults.max_images, 20);
        assert_eq!(defaults.max_redirects, 3);
        assert_eq!(defaults.timeout, Duration::from_secs(15));
        assert_eq!(defaults.connect_timeout, Duration::from_secs(5));
        assert!(defaults.allowed.is_empty());
        let settings = Config::try_parse_from([
            "proxy",
            "--api-keys",
            "k",
            "--image-url-fetch=false",
            "--image-url-allow-cidr",
            "10.20.0.0/16,fd00::/8",
            "--image-url-allow-cidr",
            "127.0.0.1",
            "--image-url-max-redirects",
            "0",
            "--image-url-timeout-seconds",
            "0",
        ])
        .unwrap()
        .image_fetch_settings();
        assert!(!settings.enabled);
        assert_eq!(
            settings.allowed,
            ["10.20.0.0/16", "fd00::/8", "127.0.0.1"]
                .map(|cidr| cidr.parse::<crate::image_fetch::Cidr>().unwrap())
        );
        assert_eq!(settings.max_redirects, 0);
        assert_eq!(
            settings.timeout,
            Duration::from_secs(1),
            "at least a second"
        );
        assert!(
            Config::try_parse_from(["proxy", "--image-url-allow-cidr", "10.0.0.0/40"]).is_err()
        );
        assert!(Config::try_parse_from(["proxy", "--image-url-fetch", "maybe"]).is_err());
    }

    #[test]
    fn bad_aliases_and_missing_keys_are_refused() {
        assert!(Config::try_parse_from(["proxy", "--model-alias", "nope"]).is_err());
        assert!(Config::try_parse_from(["proxy", "--model-alias", "=x"]).is_err());
        let config = Config::try_parse_from(["proxy"]).unwrap();
        assert!(validate(&config).is_err());
        let config =
            Config::try_parse_from(["proxy", "--api-keys", "k", "--bedrock-max-attempts", "0"])
                .unwrap();
        assert!(validate(&config).is_err());
    }

    #[test]
    fn chained_role_flags_are_validated() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["proxy", "--api-keys", "k"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).unwrap()
        };
        let config = parse(&[
            "--assume-role-arn",
            "arn:aws:iam::210987654321:role/bedrock-invoker",
            "--assume-role-external-id",
            "tenant-42",
            "--assume-role-session-name",
            "gw",
        ]);
        assert_eq!(
            config.assume_role_arn.as_deref(),
            Some("arn:aws:iam::210987654321:role/bedrock-invoker")
        );
        assert_eq!(config.assume_role_external_id.as_deref(), Some("tenant-42"));
        assert!(validate(&config).is_ok());
        assert!(validate(&parse(&["--assume-role-arn", "not-an-arn"])).is_err());
        assert!(validate(&parse(&["--assume-role-external-id", "tenant-42"])).is_err());
    }
}
