//! `guardrailConfig`: validated like Bedrock; a directive makes the guardrail intervene.

use serde::Deserialize;

use crate::error::Error;

/// What a guardrail that intervenes answers instead of the model.
pub const BLOCKED_MESSAGE: &str = "Sorry, the model cannot answer this question.";

const TRACE_VALUES: [&str; 3] = ["enabled", "disabled", "enabled_full"];
const STREAM_MODES: [&str; 2] = ["sync", "async"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailConfig {
    #[serde(default)]
    pub guardrail_identifier: Option<String>,
    #[serde(default)]
    pub guardrail_version: Option<String>,
    #[serde(default)]
    pub trace: Option<String>,
    /// ConverseStream only.
    #[serde(default)]
    pub stream_processing_mode: Option<String>,
}

fn constraint(value: &str, path: &str, rule: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value '{value}' at 'guardrailConfig.{path}' failed to satisfy constraint: {rule}"
    ))
}

fn is_guardrail_id(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

/// `[a-z0-9]+` or `arn:aws(-partition)?:bedrock:<region>:<account>:guardrail/<id>`.
fn is_guardrail_identifier(identifier: &str) -> bool {
    if is_guardrail_id(identifier) {
        return true;
    }
    let parts: Vec<&str> = identifier.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    *arn == "arn"
        && (*partition == "aws" || partition.starts_with("aws-"))
        && *service == "bedrock"
        && (1..=20).contains(&region.len())
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && account.len() == 12
        && account.bytes().all(|byte| byte.is_ascii_digit())
        && resource
            .strip_prefix("guardrail/")
            .is_some_and(is_guardrail_id)
}

/// `DRAFT` or a version number from 1 to 99999999.
fn is_guardrail_version(version: &str) -> bool {
    version == "DRAFT"
        || ((1..=8).contains(&version.len())
            && !version.starts_with('0')
            && version.bytes().all(|byte| byte.is_ascii_digit()))
}

pub fn validate(config: &GuardrailConfig) -> Result<(), Error> {
    let identifier = config.guardrail_identifier.as_deref().unwrap_or_default();
    if identifier.len() > 2048 || !is_guardrail_identifier(identifier) {
        return Err(constraint(
            identifier,
            "guardrailIdentifier",
            "Member must satisfy regular expression pattern: (([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))",
        ));
    }
    let version = config.guardrail_version.as_deref().unwrap_or_default();
    if !is_guardrail_version(version) {
        return Err(constraint(
            version,
            "guardrailVersion",
            "Member must satisfy regular expression pattern: (([1-9][0-9]{0,7})|(DRAFT))",
        ));
    }
    if let Some(trace) = config.trace.as_deref()
        && !TRACE_VALUES.contains(&trace)
    {
        return Err(constraint(
            trace,
            "trace",
            "Member must satisfy enum value set: [enabled, disabled, enabled_full]",
        ));
    }
    if let Some(mode) = config.stream_processing_mode.as_deref()
        && !STREAM_MODES.contains(&mode)
    {
        return Err(constraint(
            mode,
            "streamProcessingMode",
            "Member must satisfy enum value set: [sync, async]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identifier: &str, version: &str) -> GuardrailConfig {
        GuardrailConfig {
            guardrail_identifier: Some(identifier.to_string()),
            guardrail_version: Some(version.to_string()),
            ..GuardrailConfig::default()
        }
    }

    fn refusal(config: &GuardrailConfig) -> String {
        validate(config).unwrap_err().as_service().1
    }

    #[test]
    fn accepts_ids_arns_and_versions() {
        for (identifier, version) in [
            ("abc123xyz", "DRAFT"),
            ("gr1", "1"),
            ("gr1", "99999999"),
            (
                "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123",
                "12",
            ),
            (
                "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:guardrail/x9",
                "DRAFT",
            ),
        ] {
            assert!(
                validate(&config(identifier, version)).is_ok(),
                "{identifier}"
            );
        }
        let full = GuardrailConfig {
            trace: Some("enabled_full".into()),
            stream_processing_mode: Some("async".into()),
            ..config("gr1", "1")
        };
        assert!(validate(&full).is_ok());
    }

    #[test]
    fn refuses_bad_identifiers_versions_and_enums() {
        for identifier in [
            "",
            "Has-Upper",
            "arn:aws:s3:us-east-1:123456789012:guardrail/abc",
            "arn:aws:bedrock:us-east-1:1234:guardrail/abc",
            "arn:aws:bedrock:us-east-1:123456789012:guardrail/",
        ] {
            assert!(
                refusal(&config(identifier, "1")).contains("guardrailConfig.guardrailIdentifier"),
                "{identifier}"
            );
        }
        for version in ["", "0", "01", "draft", "123456789", "1.0"] {
            assert!(
                refusal(&config("gr1", version)).contains("guardrailConfig.guardrailVersion"),
                "{version}"
            );
        }
        assert!(refusal(&GuardrailConfig::default()).contains("guardrailIdentifier"));
        let bad_trace = GuardrailConfig {
            trace: Some("on".into()),
            ..config("gr1", "1")
        };
        assert!(refusal(&bad_trace).contains("[enabled, disabled, enabled_full]"));
        let bad_mode = GuardrailConfig {
            stream_processing_mode: Some("batch".into()),
            ..config("gr1", "1")
        };
        assert!(refusal(&bad_mode).contains("streamProcessingMode"));
    }
}
