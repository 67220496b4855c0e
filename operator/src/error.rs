//! The operator's one error type.

use crate::openwebui_admin::AdminApiError;
use crate::wiring::WiringError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("Open WebUI wiring: {0}")]
    Wiring(#[from] WiringError),
    #[error("Open WebUI admin API: {0}")]
    OpenWebUi(#[from] AdminApiError),
    #[error("serialisation: {0}")]
    Serialisation(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the reconcile did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// The error of the reconcile itself, out of the finalizer's wrapping.
    fn cause(&self) -> &Error {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Finalizer(wrapped) => match wrapped.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.cause(),
                _ => self,
            },
            _ => self,
        }
    }

    /// A write refused because the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        use kube::runtime::finalizer::Error as Finalizer;
        let conflict =
            |error: &kube::Error| matches!(error, kube::Error::Api(status) if status.code == 409);
        match self.cause() {
            Error::Kube(error) => conflict(error),
            Error::Finalizer(wrapped) => match wrapped.as_ref() {
                Finalizer::AddFinalizer(error) | Finalizer::RemoveFinalizer(error) => {
                    conflict(error)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A short label for metrics: the kind of the reconcile's own error.
    pub fn metric_label(&self) -> &'static str {
        match self.cause() {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Wiring(_) => "wiring",
            Error::OpenWebUi(_) => "open_webui",
            Error::Serialisation(_) => "serialisation",
            Error::Invalid(_) => "invalid",
            Error::Timeout(_) => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as Finalizer;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn conflicts_are_recognised_inside_the_finalizers_wrapping() {
        let applying = Error::Finalizer(Box::new(Finalizer::ApplyFailed(Error::Kube(api_error(
            409,
        )))));
        let adding = Error::Finalizer(Box::new(Finalizer::AddFinalizer(api_error(409))));
        let refused = Error::Finalizer(Box::new(Finalizer::ApplyFailed(Error::Kube(api_error(
            403,
        )))));
        assert!(applying.is_conflict());
        assert!(adding.is_conflict());
        assert!(Error::Kube(api_error(409)).is_conflict());
        assert!(!refused.is_conflict());
        assert!(!Error::Timeout(std::time::Duration::from_secs(1)).is_conflict());
        assert_eq!(applying.metric_label(), "kube");
        assert_eq!(adding.metric_label(), "finalizer");
        let wiring = Error::Finalizer(Box::new(Finalizer::CleanupFailed(Error::Invalid(
            "x".into(),
        ))));
        assert_eq!(wiring.metric_label(), "invalid");
    }
}
