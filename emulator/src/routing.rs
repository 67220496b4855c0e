//! Maps a method and raw (still percent-encoded) path to an operation.

use crate::uri_encoding::percent_decode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Converse,
    ConverseStream,
    InvokeModel,
    ListFoundationModels,
    GetFoundationModel,
    ListInferenceProfiles,
    GetInferenceProfile,
    Observations,
    RegisterCredentials,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Converse => "Converse",
            Operation::ConverseStream => "ConverseStream",
            Operation::InvokeModel => "InvokeModel",
            Operation::ListFoundationModels => "ListFoundationModels",
            Operation::GetFoundationModel => "GetFoundationModel",
            Operation::ListInferenceProfiles => "ListInferenceProfiles",
            Operation::GetInferenceProfile => "GetInferenceProfile",
            Operation::Observations => "Observations",
            Operation::RegisterCredentials => "RegisterCredentials",
        }
    }

    pub fn requires_signature(self) -> bool {
        !matches!(
            self,
            Operation::Observations | Operation::RegisterCredentials
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    /// The decoded path label (model or profile identifier), when the operation has one.
    pub label: Option<String>,
}

fn route_with(operation: Operation, label: Option<&str>) -> Option<Route> {
    Some(Route {
        operation,
        label: label.map(|raw| percent_decode(raw, false)),
    })
}

pub fn route(method: &str, raw_path: &str) -> Option<Route> {
    let segments: Vec<&str> = raw_path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        ("POST", ["model", id, "converse"]) => route_with(Operation::Converse, Some(id)),
        ("POST", ["model", id, "converse-stream"]) => {
            route_with(Operation::ConverseStream, Some(id))
        }
        ("POST", ["model", id, "invoke"]) => route_with(Operation::InvokeModel, Some(id)),
        ("GET", ["foundation-models"]) => route_with(Operation::ListFoundationModels, None),
        ("GET", ["foundation-models", id]) => route_with(Operation::GetFoundationModel, Some(id)),
        ("GET", ["inference-profiles"]) => route_with(Operation::ListInferenceProfiles, None),
        ("GET", ["inference-profiles", id]) => route_with(Operation::GetInferenceProfile, Some(id)),
        ("GET", ["_emulator", "observations"]) => route_with(Operation::Observations, None),
        ("POST", ["_emulator", "credentials"]) => route_with(Operation::RegisterCredentials, None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_runtime_paths_with_decoded_labels() {
        let route = route(
            "POST",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabcd1234efgh/converse",
        )
        .unwrap();
        assert_eq!(route.operation, Operation::Converse);
        assert_eq!(
            route.label.as_deref(),
            Some(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
            )
        );
        assert_eq!(
            super::route("POST", "/model/amazon.titan-embed-text-v2%3A0/invoke")
                .unwrap()
                .label
                .as_deref(),
            Some("amazon.titan-embed-text-v2:0")
        );
        assert_eq!(
            super::route("POST", "/model/x/converse-stream")
                .unwrap()
                .operation,
            Operation::ConverseStream
        );
    }

    #[test]
    fn routes_control_plane_paths() {
        assert_eq!(
            route("GET", "/foundation-models").unwrap().operation,
            Operation::ListFoundationModels
        );
        assert_eq!(
            route("GET", "/inference-profiles/").unwrap().operation,
            Operation::ListInferenceProfiles
        );
        assert_eq!(
            route("GET", "/_emulator/observations").unwrap().operation,
            Operation::Observations
        );
        let register = route("POST", "/_emulator/credentials").unwrap().operation;
        assert_eq!(register, Operation::RegisterCredentials);
        assert!(!register.requires_signature());
        assert!(Operation::Converse.requires_signature());
        assert_eq!(route("GET", "/_emulator/credentials"), None);
    }

    #[test]
    fn unknown_paths_and_methods_do_not_route() {
        for (method, path) in [
            ("GET", "/model/x/converse"),
            ("POST", "/model/converse"),
            ("POST", "/model/x/y/converse"),
            ("GET", "/"),
            ("GET", ""),
            ("DELETE", "/foundation-models"),
        ] {
            assert_eq!(route(method, path), None, "{method} {path}");
        }
    }
}
