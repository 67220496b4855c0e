//! Bedrock (and AWS SDK) failures -> the status and error a client sees.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::UpstreamError;

/// The client-facing status for a Bedrock exception name, and whether the
/// client should be told when to retry.
pub fn status_for_exception(code: &str) -> (u16, bool) {
    match code {
        "ValidationException" => (400, false),
        "AccessDeniedException" => (403, false),
        "ResourceNotFoundException" => (404, false),
        "ThrottlingException" | "ServiceQuotaExceededException" => (429, true),
        "ModelNotReadyException" | "ServiceUnavailableException" => (503, true),
        "ModelTimeoutException" => (504, false),
        _ => (502, false),
    }
}

pub fn from_exception(code: &str, message: &str, retry_after_seconds: u64) -> UpstreamError {
    let (status, retry) = status_for_exception(code);
    UpstreamError {
        status,
        code: code.to_owned(),
        message: message.to_owned(),
        retry_after_seconds: retry.then_some(retry_after_seconds),
    }
}

pub fn from_sdk_error<E, R>(error: &SdkError<E, R>, retry_after_seconds: u64) -> UpstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let service_error = context.err();
            from_exception(
                service_error.code().unwrap_or("UnknownBedrockError"),
                service_error
                    .message()
                    .unwrap_or("Bedrock returned an error without a message."),
                retry_after_seconds,
            )
        }
        SdkError::TimeoutError(_) => UpstreamError {
            status: 504,
            code: "BedrockTimeout".into(),
            message: "Bedrock did not answer in time.".into(),
            retry_after_seconds: None,
        },
        _ if is_credentials_failure(error) => UpstreamError {
            status: 500,
            code: "CredentialsUnavailable".into(),
            message: format!(
                "The gateway could not obtain AWS credentials: {}",
                DisplayErrorContext(error)
            ),
            retry_after_seconds: None,
        },
        SdkError::DispatchFailure(failure) => UpstreamError {
            status: if failure.is_timeout() { 504 } else { 502 },
            code: "BedrockUnreachable".into(),
            message: format!("Could not reach Bedrock: {}", DisplayErrorContext(error)),
            retry_after_seconds: None,
        },
        SdkError::ConstructionFailure(_) => UpstreamError {
            status: 500,
            code: "RequestNotSent".into(),
            message: format!(
                "The Bedrock request could not be prepared: {}",
                DisplayErrorContext(error)
            ),
            retry_after_seconds: None,
        },
        _ => UpstreamError {
            status: 502,
            code: "InvalidBedrockResponse".into(),
            message: format!(
                "Bedrock's answer could not be read: {}",
                DisplayErrorContext(error)
            ),
            retry_after_seconds: None,
        },
    }
}

/// Credential failures surface inside dispatch or construction failures;
/// they are the gateway's own problem, not Bedrock's, and say so.
fn is_credentials_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<CredentialsError>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_map_to_faithful_statuses() {
        let cases = [
            ("ValidationException", 400, false),
            ("AccessDeniedException", 403, false),
            ("ResourceNotFoundException", 404, false),
            ("ThrottlingException", 429, true),
            ("ServiceQuotaExceededException", 429, true),
            ("ModelNotReadyException", 503, true),
            ("ServiceUnavailableException", 503, true),
            ("ModelTimeoutException", 504, false),
            ("ModelErrorException", 502, false),
            ("InternalServerException", 502, false),
            ("ModelStreamErrorException", 502, false),
            ("UnrecognizedClientException", 502, false),
            ("", 502, false),
        ];
        for (code, status, retry) in cases {
            assert_eq!(status_for_exception(code), (status, retry), "{code}");
            let upstream = from_exception(code, "m", 7);
            assert_eq!(upstream.retry_after_seconds, retry.then_some(7), "{code}");
            assert_eq!(upstream.code, code);
            assert_eq!(upstream.message, "m");
        }
    }
}
