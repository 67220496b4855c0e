//! The crate's error type.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid {what} '{value}': {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build a request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("unexpected status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("malformed reply: {0}")]
    Reply(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot read {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
