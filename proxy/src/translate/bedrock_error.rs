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

/// AWS quotes the canonical request and the string to sign in signature
/// errors; the canonical request holds the `x-amz-security-token` header, so
/// the message is cut where the quotes begin.
pub fn without_signing_details(message: &str) -> &str {
    const QUOTES: [&str; 2] = [
        "The Canonical String for this request",
        "The String-to-Sign",
    ];
    let cut = QUOTES
        .iter()
        .filter_map(|quote| message.find(quote))
        .min()
        .unwrap_or(message.len());
    message[..cut].trim_end()
}

pub fn from_exception(code: &str, message: &str, retry_after_seconds: u64) -> UpstreamError {
    let (status, retry) = status_for_exception(code);
    UpstreamError {
        status,
        code: code.to_owned(),
        message: without_signing_details(message).to_owned(),
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
            let code = service_error
                .code()
                .or_else(|| stream_exception_name(service_error));
            from_exception(
                code.unwrap_or("UnknownBedrockError"),
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
            // An STS refusal may quote a canonical request too.
            message: without_signing_details(&format!(
                "The gateway could not obtain AWS credentials: {}",
                DisplayErrorContext(error)
            ))
            .to_owned(),
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

/// Exceptions inside a ConverseStream event stream carry no code in their
/// metadata (Bedrock sends only a message in the frame); the SDK's variant
/// names them.
fn stream_exception_name(error: &dyn std::any::Any) -> Option<&'static str> {
    use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError as StreamError;
    match error.downcast_ref::<StreamError>()? {
        StreamError::InternalServerException(_) => Some("InternalServerException"),
        StreamError::ModelStreamErrorException(_) => Some("ModelStreamErrorException"),
        StreamError::ServiceUnavailableException(_) => Some("ServiceUnavailableException"),
        StreamError::ThrottlingException(_) => Some("ThrottlingException"),
        StreamError::ValidationException(_) => Some("ValidationException"),
        _ => None,
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
    fn signature_errors_lose_the_quoted_canonical_request() {
        let message = "The request signature we calculated does not match the signature you provided.\n\n\
            The Canonical String for this request should have been\n'POST\n/model/m/converse\n\n\
            x-amz-security-token:session-token-value\n'\n\nThe String-to-Sign should have been\n'AWS4'\n";
        let upstream = from_exception("InvalidSignatureException", message, 2);
        assert_eq!(
            upstream.message,
            "The request signature we calculated does not match the signature you provided."
        );
        let only_string_to_sign =
            from_exception("X", "Bad.\nThe String-to-Sign should have been 'a'", 2);
        assert_eq!(only_string_to_sign.message, "Bad.");
        assert_eq!(
            from_exception("X", "Plain message.", 2).message,
            "Plain message."
        );
    }

    #[test]
    fn exceptions_inside_a_stream_keep_their_names() {
        use aws_sdk_bedrockruntime::types::error::{
            ConverseStreamOutputError, ModelStreamErrorException, ThrottlingException,
        };
        use aws_smithy_types::event_stream::RawMessage;
        let model_error = SdkError::service_error(
            ConverseStreamOutputError::ModelStreamErrorException(
                // As the SDK reads an exception frame: the metadata has the
                // payload's message and no code.
                ModelStreamErrorException::builder()
                    .message("The model failed.")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .message("The model failed.")
                            .build(),
                    )
                    .build(),
            ),
            RawMessage::invalid(None),
        );
        let upstream = from_sdk_error(&model_error, 2);
        assert_eq!(upstream.code, "ModelStreamErrorException");
        assert_eq!(upstream.status, 502);
        assert_eq!(upstream.message, "The model failed.");
        let throttled = SdkError::service_error(
            ConverseStreamOutputError::ThrottlingException(
                ThrottlingException::builder().message("slow").build(),
            ),
            RawMessage::invalid(None),
        );
        let upstream = from_sdk_error(&throttled, 2);
        assert_eq!(upstream.code, "ThrottlingException");
        assert_eq!(upstream.retry_after_seconds, Some(2));
    }

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
