//! Which AWS identity the gateway runs as: STS `GetCallerIdentity`, logged once at start.
//! Only the ARN and account are logged, never keys or tokens; a failure is a warning, since
//! readiness (`/readyz`) already reports missing credentials.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_smithy_types::error::display::DisplayErrorContext;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The ARN and account of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub arn: String,
    pub account: Option<String>,
}

/// Reads the identity out of a `GetCallerIdentity` answer.
pub fn identity_from(arn: Option<&str>, account: Option<&str>) -> Result<CallerIdentity, String> {
    match arn.map(str::trim).filter(|arn| !arn.is_empty()) {
        Some(arn) => Ok(CallerIdentity {
            arn: arn.to_owned(),
            account: account.map(str::to_owned),
        }),
        None => Err("GetCallerIdentity answered without an ARN".into()),
    }
}

pub async fn lookup(sdk_config: &SdkConfig) -> Result<CallerIdentity, String> {
    let client = aws_sdk_sts::Client::new(sdk_config);
    let output = tokio::time::timeout(LOOKUP_TIMEOUT, client.get_caller_identity().send())
        .await
        .map_err(|_| format!("no answer within {} seconds", LOOKUP_TIMEOUT.as_secs()))?
        .map_err(|error| {
            // An STS signature refusal quotes the canonical request, session token included.
            crate::translate::bedrock_error::without_signing_details(
                &DisplayErrorContext(&error).to_string(),
            )
            .to_owned()
        })?;
    identity_from(output.arn(), output.account())
}

/// Logs the identity in the background, so that startup never waits for STS.
pub fn spawn_log(sdk_config: SdkConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match lookup(&sdk_config).await {
            Ok(identity) => tracing::info!(
                arn = %identity.arn,
                account = identity.account.as_deref().unwrap_or_default(),
                "running as AWS identity"
            ),
            Err(reason) => tracing::warn!(
                %reason,
                "cannot tell which AWS identity the gateway runs as (GetCallerIdentity failed)"
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arn_is_required() {
        assert_eq!(
            identity_from(
                Some("arn:aws:sts::123456789012:assumed-role/gw/s"),
                Some("123456789012")
            ),
            Ok(CallerIdentity {
                arn: "arn:aws:sts::123456789012:assumed-role/gw/s".into(),
                account: Some("123456789012".into()),
            })
        );
        assert!(identity_from(None, Some("123456789012")).is_err());
        assert!(identity_from(Some(" "), None).is_err());
    }
}
