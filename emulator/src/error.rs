//! The crate's single error type and the AWS exception kinds it maps to.

use std::fmt;

/// An AWS exception as Bedrock reports it over restJson1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    AccessDenied,
    Conflict,
    ExpiredToken,
    IncompleteSignature,
    InternalServer,
    InvalidSignature,
    MissingAuthenticationToken,
    ModelError,
    ModelNotReady,
    ModelStreamError,
    ModelTimeout,
    ResourceNotFound,
    ServiceQuotaExceeded,
    ServiceUnavailable,
    Throttling,
    UnknownOperation,
    UnrecognizedClient,
    Validation,
}

const BEDROCK_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
const CORAL_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.coral.service/";

impl ErrorKind {
    /// Every kind, for lookups by name.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::AccessDenied,
        ErrorKind::Conflict,
        ErrorKind::ExpiredToken,
        ErrorKind::IncompleteSignature,
        ErrorKind::InternalServer,
        ErrorKind::InvalidSignature,
        ErrorKind::MissingAuthenticationToken,
        ErrorKind::ModelError,
        ErrorKind::ModelNotReady,
        ErrorKind::ModelStreamError,
        ErrorKind::ModelTimeout,
        ErrorKind::ResourceNotFound,
        ErrorKind::ServiceQuotaExceeded,
        ErrorKind::ServiceUnavailable,
        ErrorKind::Throttling,
        ErrorKind::UnknownOperation,
        ErrorKind::UnrecognizedClient,
        ErrorKind::Validation,
    ];

    /// The shape name, as sent in `x-amzn-ErrorType`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::ExpiredToken => "ExpiredTokenException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::ModelError => "ModelErrorException",
            ErrorKind::ModelNotReady => "ModelNotReadyException",
            ErrorKind::ModelStreamError => "ModelStreamErrorException",
            ErrorKind::ModelTimeout => "ModelTimeoutException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::Validation => "ValidationException",
        }
    }

    /// Parses a shape name such as `ThrottlingException`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// HTTP status from the Bedrock service models.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::AccessDenied
            | ErrorKind::ExpiredToken
            | ErrorKind::InvalidSignature
            | ErrorKind::MissingAuthenticationToken
            | ErrorKind::UnrecognizedClient => 403,
            ErrorKind::Conflict => 400,
            ErrorKind::IncompleteSignature => 400,
            ErrorKind::InternalServer => 500,
            ErrorKind::ModelError | ErrorKind::ModelStreamError => 424,
            ErrorKind::ModelNotReady | ErrorKind::Throttling => 429,
            ErrorKind::ModelTimeout => 408,
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => 404,
            ErrorKind::ServiceQuotaExceeded => 400,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::Validation => 400,
        }
    }

    /// Value of the `x-amzn-ErrorType` header.
    pub fn error_type_header(self) -> String {
        let namespace = match self {
            ErrorKind::ExpiredToken
            | ErrorKind::IncompleteSignature
            | ErrorKind::InvalidSignature
            | ErrorKind::MissingAuthenticationToken
            | ErrorKind::UnknownOperation
            | ErrorKind::UnrecognizedClient => CORAL_NAMESPACE,
            _ => BEDROCK_NAMESPACE,
        };
        format!("{}:{namespace}", self.name())
    }

    /// A message resembling the one Bedrock sends, for scripted faults.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => {
                "You don't have access to the model with the specified model ID."
            }
            ErrorKind::Conflict => "The request conflicts with the current state of the resource.",
            ErrorKind::ExpiredToken => "The security token included in the request is expired",
            ErrorKind::IncompleteSignature => {
                "The request signature does not conform to AWS standards."
            }
            ErrorKind::InternalServer => {
                "The system encountered an unexpected error during processing. Try your request again."
            }
            ErrorKind::InvalidSignature => {
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
            }
            ErrorKind::MissingAuthenticationToken => "Missing Authentication Token",
            ErrorKind::ModelError => "The model encountered an error while processing the request.",
            ErrorKind::ModelNotReady => {
                "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times."
            }
            ErrorKind::ModelStreamError => "The model stream was interrupted.",
            ErrorKind::ModelTimeout => {
                "Model has timed out in processing the request. Try your request again."
            }
            ErrorKind::ResourceNotFound => "The specified resource could not be found.",
            ErrorKind::ServiceQuotaExceeded => {
                "Your request exceeds the service quota for your account."
            }
            ErrorKind::ServiceUnavailable => "Bedrock is unable to process your request.",
            ErrorKind::Throttling => "Too many requests, please wait before trying again.",
            ErrorKind::UnknownOperation => {
                "The requested operation is not recognized by the service."
            }
            ErrorKind::UnrecognizedClient => {
                "The security token included in the request is invalid."
            }
            ErrorKind::Validation => "The request failed validation.",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in the emulator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An AWS exception returned to the client.
    #[error("{kind}: {message}")]
    Service { kind: ErrorKind, message: String },
    /// A malformed `application/vnd.amazon.eventstream` frame.
    #[error("malformed event stream frame: {0}")]
    Frame(&'static str),
}

impl Error {
    pub fn service(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::Service {
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Error {
        Error::service(ErrorKind::Validation, message)
    }

    /// The exception kind and message to send; framing errors become internal errors.
    pub fn as_service(&self) -> (ErrorKind, String) {
        match self {
            Error::Service { kind, message } => (*kind, message.clone()),
            Error::Frame(reason) => (ErrorKind::InternalServer, (*reason).to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ErrorKind::from_name("NopeException"), None);
    }

    #[test]
    fn statuses_follow_the_service_model() {
        assert_eq!(ErrorKind::Validation.status(), 400);
        assert_eq!(ErrorKind::AccessDenied.status(), 403);
        assert_eq!(ErrorKind::ExpiredToken.status(), 403);
        assert_eq!(ErrorKind::ResourceNotFound.status(), 404);
        assert_eq!(ErrorKind::ModelTimeout.status(), 408);
        assert_eq!(ErrorKind::ModelError.status(), 424);
        assert_eq!(ErrorKind::Throttling.status(), 429);
        assert_eq!(ErrorKind::ModelNotReady.status(), 429);
        assert_eq!(ErrorKind::ServiceQuotaExceeded.status(), 400);
        assert_eq!(ErrorKind::InternalServer.status(), 500);
        assert_eq!(ErrorKind::ServiceUnavailable.status(), 503);
    }

    #[test]
    fn error_type_header_carries_the_namespace() {
        assert_eq!(
            ErrorKind::Throttling.error_type_header(),
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
        assert!(
            ErrorKind::UnrecognizedClient
                .error_type_header()
                .starts_with("UnrecognizedClientException:")
        );
    }
}
