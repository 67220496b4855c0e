//! What the emulator saw, for assertions in tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::sigv4::PresentedIdentity;

/// Per-operation counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationObservations {
    /// Requests routed to the operation, including rejected ones.
    pub requests: u64,
    /// Requests rejected because of their signature or credentials.
    pub auth_failures: u64,
    /// Access key id of the last signed request to this operation.
    pub last_access_key_id: Option<String>,
    /// `x-amz-security-token` of the last signed request to this operation.
    pub last_session_token: Option<String>,
}

/// A snapshot of everything recorded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observations {
    /// Keyed by operation name, e.g. `Converse`, `ConverseStream`, `InvokeModel`,
    /// `ListFoundationModels`, `ListInferenceProfiles`.
    pub operations: BTreeMap<String, OperationObservations>,
    /// Access key id of the last signed request to any operation.
    pub last_access_key_id: Option<String>,
    /// Session token of the last signed request to any operation.
    pub last_session_token: Option<String>,
    /// `requestMetadata` of the last valid Converse or ConverseStream request that carried it.
    pub last_request_metadata: Option<BTreeMap<String, String>>,
    /// Hex SHA-256 of each image of the last valid Converse or ConverseStream
    /// request that carried images, in order.
    pub last_image_sha256: Vec<String>,
}

impl Observations {
    /// Requests served for `operation` (zero when never called).
    pub fn requests(&self, operation: &str) -> u64 {
        self.operations
            .get(operation)
            .map_or(0, |observed| observed.requests)
    }

    pub fn converse_requests(&self) -> u64 {
        self.requests("Converse")
    }

    pub fn converse_stream_requests(&self) -> u64 {
        self.requests("ConverseStream")
    }

    pub fn invoke_model_requests(&self) -> u64 {
        self.requests("InvokeModel")
    }

    pub fn list_foundation_models_requests(&self) -> u64 {
        self.requests("ListFoundationModels")
    }

    pub fn list_inference_profiles_requests(&self) -> u64 {
        self.requests("ListInferenceProfiles")
    }
}

#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<Observations>,
}

impl Recorder {
    fn with_state<T>(&self, f: impl FnOnce(&mut Observations) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update; counters stay usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    pub fn record(&self, operation: &str, identity: Option<&PresentedIdentity>, auth_failed: bool) {
        self.with_state(|state| {
            let entry = state.operations.entry(operation.to_string()).or_default();
            entry.requests += 1;
            if auth_failed {
                entry.auth_failures += 1;
            }
            if let Some(identity) = identity {
                entry.last_access_key_id = Some(identity.access_key_id.clone());
                entry.last_session_token.clone_from(&identity.session_token);
                state.last_access_key_id = Some(identity.access_key_id.clone());
                state.last_session_token.clone_from(&identity.session_token);
            }
        });
    }

    pub fn record_request_metadata(&self, metadata: &BTreeMap<String, String>) {
        self.with_state(|state| state.last_request_metadata = Some(metadata.clone()));
    }

    pub fn record_images(&self, sha256: &[String]) {
        self.with_state(|state| state.last_image_sha256 = sha256.to_vec());
    }

    pub fn snapshot(&self) -> Observations {
        self.with_state(|state| state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_counts_and_last_identity() {
        let recorder = Recorder::default();
        let first = PresentedIdentity {
            access_key_id: "AKIA1".into(),
            session_token: Some("t1".into()),
        };
        let second = PresentedIdentity {
            access_key_id: "AKIA2".into(),
            session_token: None,
        };
        recorder.record("Converse", Some(&first), false);
        recorder.record("Converse", Some(&second), true);
        recorder.record("InvokeModel", None, true);
        let observed = recorder.snapshot();
        assert_eq!(observed.requests("Converse"), 2);
        assert_eq!(observed.converse_requests(), 2);
        assert_eq!(observed.requests("ConverseStream"), 0);
        let converse = &observed.operations["Converse"];
        assert_eq!(converse.auth_failures, 1);
        assert_eq!(converse.last_access_key_id.as_deref(), Some("AKIA2"));
        assert_eq!(converse.last_session_token, None);
        assert_eq!(observed.last_access_key_id.as_deref(), Some("AKIA2"));
        let json = serde_json::to_value(&observed).unwrap();
        assert_eq!(json["operations"]["Converse"]["requests"], 2);
        assert_eq!(json["operations"]["InvokeModel"]["authFailures"], 1);
        assert_eq!(json["lastRequestMetadata"], serde_json::Value::Null);
    }

    #[test]
    fn records_the_last_request_metadata() {
        let recorder = Recorder::default();
        let first = BTreeMap::from([("user".to_string(), "alice".to_string())]);
        let second = BTreeMap::from([("team".to_string(), "blue".to_string())]);
        recorder.record_request_metadata(&first);
        recorder.record_request_metadata(&second);
        let observed = recorder.snapshot();
        assert_eq!(observed.last_request_metadata, Some(second));
        let json = serde_json::to_value(&observed).unwrap();
        assert_eq!(json["lastRequestMetadata"]["team"], "blue");
    }

    #[test]
    fn records_the_images_of_the_last_request_with_images() {
        let recorder = Recorder::default();
        recorder.record_images(&["aa".to_string(), "bb".to_string()]);
        recorder.record_images(&["cc".to_string()]);
        let observed = recorder.snapshot();
        assert_eq!(observed.last_image_sha256, ["cc"]);
        let json = serde_json::to_value(&observed).unwrap();
        assert_eq!(json["lastImageSha256"][0], "cc");
    }
}
