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
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
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
