//! The optional chained role: a second IAM role assumed (STS `AssumeRole`) with the pod's own
//! credentials (IRSA, EKS Pod Identity, ...), typically a role in the account that has Bedrock.
//! Its credentials are cached by the SDK and refreshed before they expire, like the pod's.

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::config::Config;

pub const DEFAULT_SESSION_NAME: &str = "bedrock-gateway-proxy";

/// What to assume, checked against the limits STS enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

impl AssumeRole {
    /// The chained role the flags ask for, if any.
    pub fn from_config(config: &Config) -> Result<Option<AssumeRole>, String> {
        Self::from_flags(
            config.assume_role_arn.as_deref(),
            config.assume_role_external_id.as_deref(),
            &config.assume_role_session_name,
        )
    }

    pub fn from_flags(
        role_arn: Option<&str>,
        external_id: Option<&str>,
        session_name: &str,
    ) -> Result<Option<AssumeRole>, String> {
        let role_arn = role_arn.map(str::trim).filter(|arn| !arn.is_empty());
        let external_id = external_id.map(str::trim).filter(|id| !id.is_empty());
        let Some(role_arn) = role_arn else {
            if external_id.is_some() {
                return Err("--assume-role-external-id needs --assume-role-arn".into());
            }
            return Ok(None);
        };
        check_role_arn(role_arn)?;
        if let Some(external_id) = external_id {
            check_external_id(external_id)?;
        }
        let session_name = session_name.trim();
        check_session_name(session_name)?;
        Ok(Some(AssumeRole {
            role_arn: role_arn.to_owned(),
            external_id: external_id.map(str::to_owned),
            session_name: session_name.to_owned(),
        }))
    }

    /// `base` with its credentials replaced by this role's, assumed with `base`'s credentials
    /// through `base`'s STS endpoint and region.
    pub async fn chain_onto(&self, base: &SdkConfig) -> SdkConfig {
        let mut builder = AssumeRoleProvider::builder(&self.role_arn)
            .session_name(&self.session_name)
            .configure(base);
        if let Some(external_id) = &self.external_id {
            builder = builder.external_id(external_id);
        }
        let provider = builder.build().await;
        base.to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build()
    }
}

/// `arn:<partition>:iam::<12-digit account>:role/<optional path/><name>`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let invalid = || {
        format!("--assume-role-arn must look like arn:aws:iam::123456789012:role/name, got '{arn}'")
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("role/").unwrap_or_default();
    let name_ok = !name.is_empty()
        && !name.ends_with('/')
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-' | '/')
        });
    if *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "iam"
        && region.is_empty()
        && account_ok
        && name_ok
    {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// STS: 2 to 64 characters of `[\w+=,.@-]`.
fn check_session_name(name: &str) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-');
    if (2..=64).contains(&name.len()) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "--assume-role-session-name must be 2 to 64 letters, digits or _+=,.@- characters, got '{name}'"
        ))
    }
}

/// STS: 2 to 1224 characters of `[\w+=,.@:/-]`. The value is not repeated in the error.
fn check_external_id(external_id: &str) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | ':' | '/' | '-')
    };
    if (2..=1224).contains(&external_id.len()) && external_id.chars().all(allowed) {
        Ok(())
    } else {
        Err(
            "--assume-role-external-id must be 2 to 1224 letters, digits or _+=,.@:/- characters"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_role_means_no_chaining() {
        assert_eq!(
            AssumeRole::from_flags(None, None, DEFAULT_SESSION_NAME),
            Ok(None)
        );
        assert_eq!(
            AssumeRole::from_flags(Some(" "), None, DEFAULT_SESSION_NAME),
            Ok(None)
        );
        assert!(AssumeRole::from_flags(None, Some("tenant-42"), DEFAULT_SESSION_NAME).is_err());
    }

    #[test]
    fn a_role_with_external_id_and_session_name() {
        let role = AssumeRole::from_flags(
            Some(" arn:aws:iam::210987654321:role/team/bedrock-invoker "),
            Some("tenant-42"),
            "gw-session",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            role,
            AssumeRole {
                role_arn: "arn:aws:iam::210987654321:role/team/bedrock-invoker".into(),
                external_id: Some("tenant-42".into()),
                session_name: "gw-session".into(),
            }
        );
    }

    #[test]
    fn role_arns_are_checked() {
        for good in [
            "arn:aws:iam::123456789012:role/r",
            "arn:aws-us-gov:iam::123456789012:role/path/to/r+=,.@_-",
            "arn:aws-cn:iam::123456789012:role/r",
        ] {
            assert_eq!(check_role_arn(good), Ok(()), "{good}");
        }
        for bad in [
            "role/r",
            "arn:aws:iam::12345678901:role/r",
            "arn:aws:iam::123456789012:user/u",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/dir/",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:sts::123456789012:role/r",
            "arn:aws:iam::123456789012:role/r r",
            "arn:other:iam::123456789012:role/r",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_names_and_external_ids_follow_sts_limits() {
        assert!(check_session_name("ab").is_ok());
        assert!(check_session_name(&"a".repeat(64)).is_ok());
        for bad in ["a", "has space", "slash/", &"a".repeat(65)] {
            assert!(check_session_name(bad).is_err(), "{bad}");
        }
        assert!(check_external_id("urn:tenant/42").is_ok());
        let error = check_external_id("secret value").unwrap_err();
        assert!(!error.contains("secret value"));
        assert!(check_external_id("x").is_err());
        assert!(check_external_id(&"x".repeat(1225)).is_err());
    }
}
