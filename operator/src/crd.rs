//! The `BedrockGateway` custom resource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every resource this project defines.
pub const GROUP: &str = "bedrock-gateway.io";

/// One `BedrockGateway` runs a bedrock-gateway-proxy (an OpenAI-compatible
/// API in front of Amazon Bedrock) and wires it into an Open WebUI workload.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "bedrock-gateway.io",
    version = "v1alpha1",
    kind = "BedrockGateway",
    namespaced,
    doc = "A BedrockGateway runs bedrock-gateway-proxy (an OpenAI-compatible API in front of Amazon Bedrock) and wires it into Open WebUI.",
    shortname = "bgw",
    status = "BedrockGatewayStatus",
    printcolumn = r#"{"name": "URL", "type": "string", "jsonPath": ".status.url"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BedrockGatewaySpec {
    /// AWS region of Bedrock, e.g. `us-east-1`.
    #[schemars(regex(pattern = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"))]
    pub region: String,

    /// How the proxy gets AWS credentials.
    #[serde(default)]
    pub aws: AwsSpec,

    /// The API key clients (Open WebUI) present.
    #[serde(default)]
    pub api_key: ApiKeySpec,

    /// Proxy replicas; a PodDisruptionBudget is created when more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,

    /// Proxy image; defaults to the operator's `--proxy-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Which Bedrock models are served, and under which extra names.
    #[serde(default)]
    pub models: ModelsSpec,

    /// Other proxy settings.
    #[serde(default)]
    pub proxy: ProxySettings,

    /// The Open WebUI workload to wire this gateway into.
    #[serde(rename = "openWebUI", default, skip_serializing_if = "Option::is_none")]
    pub open_web_ui: Option<OpenWebUiSpec>,

    #[serde(default)]
    pub metrics: MetricsSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.roleArn) && has(self.serviceAccountName))").message("set either aws.roleArn (IRSA, the operator creates the ServiceAccount) or aws.serviceAccountName (an existing one), not both"))]
pub struct AwsSpec {
    /// IAM role for IRSA: the operator creates the proxy's ServiceAccount
    /// annotated `eks.amazonaws.com/role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"))]
    pub role_arn: Option<String>,

    /// An existing ServiceAccount to run as (for example one bound through
    /// EKS Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// A second role assumed on top of the pod's credentials (cross-account Bedrock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"))]
    pub assume_role_arn: Option<String>,

    /// External id required by the assumed role's trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// A Secret key holding the API key; without it the operator generates a
    /// key once into a Secret it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelsSpec {
    /// Only model ids matching one of these patterns (`*` wildcard) are served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Extra model names: alias -> Bedrock model id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProxySettings {
    /// Insert Bedrock prompt-cache points for models that support them.
    #[serde(default)]
    pub prompt_caching: bool,
    /// Bedrock guardrail applied to every chat completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailRef>,
    /// `RUST_LOG` filter of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub log_level: Option<String>,
    /// Requests per minute each API key may make; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub key_requests_per_minute: Option<u32>,
    /// Streaming completions each API key may have open at once; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub key_max_concurrent_streams: Option<u32>,
    /// Fetch `image_url` parts given as http(s) URLs (the default); `false`
    /// accepts `data:` URLs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url_fetch: Option<bool>,
    /// Networks that are not public (private, loopback, link-local, ...)
    /// which image URLs may still reach, as CIDRs such as `10.20.0.0/16`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(network, isCIDR(network))").message("imageUrlAllowCidrs holds networks in CIDR notation, such as 10.20.0.0/16 or fd00::/8"))]
    pub image_url_allow_cidrs: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailRef {
    #[schemars(length(min = 1, max = 2048))]
    pub id: String,
    /// `DRAFT` or a version number.
    #[schemars(regex(pattern = r"^(DRAFT|[1-9][0-9]{0,7})$"))]
    pub version: String,
}

/// URLs Open WebUI is given: `http` or `https`, a host, an optional port and
/// path, no query, no fragment and no trailing `/` (Open WebUI breaks on one).
const HTTP_URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s?#]*[^\s/?#])?$";

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.workloadRef) || has(self.adminApi)").message("openWebUI needs workloadRef (environment wiring), adminApi (registration through the admin API), or both"),
    validation = Rule::new("has(self.workloadRef) || !has(self.mode) || self.mode == 'env'").message("openWebUI.mode sidecar needs openWebUI.workloadRef"),
    validation = Rule::new("has(self.workloadRef) || !has(self.adminApi) || has(self.adminApi.url)").message("openWebUI.adminApi.url is required without openWebUI.workloadRef (it defaults to the Service in front of the workload)"),
    validation = Rule::new("!has(self.gatewayUrl) || !has(self.mode) || self.mode == 'env'").message("openWebUI.gatewayUrl does not apply to sidecar mode (Open WebUI reaches the sidecar on localhost)"),
)]
pub struct OpenWebUiSpec {
    /// The Open WebUI Deployment or StatefulSet whose environment is wired
    /// (read by Open WebUI on its first start only; see `adminApi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// `env` (default): add this gateway to the workload's
    /// `OPENAI_API_BASE_URLS`/`OPENAI_API_KEYS`. `sidecar`: run the proxy
    /// inside the Open WebUI pod, listening on localhost.
    #[serde(default)]
    pub mode: WiringMode,
    /// Open WebUI copies its connection settings from the environment into
    /// its database on the first start and ignores the environment after
    /// that. `true` sets `ENABLE_PERSISTENT_CONFIG=False` so the wired
    /// connection also appears on an existing install, at the price that
    /// settings changed in the admin UI then last only until the next restart.
    #[serde(default)]
    pub env_overrides_database: bool,
    /// The gateway's base URL as Open WebUI reaches it, when not the
    /// gateway's in-cluster Service URL (`status.url`), e.g. through an
    /// ingress. Used by the environment wiring and the admin API alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HTTP_URL_PATTERN), length(max = 2048))]
    pub gateway_url: Option<String>,
    /// Register the gateway through Open WebUI's admin API, which stores the
    /// connection in Open WebUI's database: it takes effect on an existing
    /// install, at once and for every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_api: Option<OpenWebUiAdminApi>,
    /// Use the gateway for Open WebUI's document embeddings (RAG), through
    /// the environment (`RAG_*` variables) and, with `adminApi`, the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<OpenWebUiEmbeddings>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OpenWebUiAdminApi {
    /// Open WebUI's base URL, as the operator reaches it, e.g.
    /// `http://open-webui.open-webui.svc.cluster.local`. Defaults to the
    /// Service in the gateway's namespace that selects the pods of `workloadRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HTTP_URL_PATTERN), length(max = 2048))]
    pub url: Option<String>,
    /// A Secret key, in the gateway's namespace, holding an API key (`sk-...`)
    /// or a token of an Open WebUI admin.
    pub api_key_secret_ref: SecretKeyRef,
    /// Open WebUI lists the gateway's models as `<prefixId>.<model id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub prefix_id: Option<String>,
    /// Only these models (ids as the gateway lists them, without the prefix)
    /// appear in Open WebUI; all of the gateway's models when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub model_ids: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OpenWebUiEmbeddings {
    /// The embedding model, as the gateway names it, e.g.
    /// `amazon.titan-embed-text-v2:0` or `cohere.embed-multilingual-v3`.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    #[serde(default)]
    pub kind: WorkloadKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Open WebUI container; defaults to `open-webui`, or the only container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WiringMode {
    #[default]
    Env,
    Sidecar,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a Prometheus Operator ServiceMonitor for the proxy.
    #[serde(default)]
    pub service_monitor: bool,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BedrockGatewayStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The in-cluster base URL Open WebUI uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Secret holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_carries_names_columns_and_validation() {
        let crd = serde_json::to_value(BedrockGateway::crd()).unwrap();
        assert_eq!(
            crd["metadata"]["name"],
            "bedrockgateways.bedrock-gateway.io"
        );
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "bgw");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|column| column["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["URL", "Ready", "Age"]);
        let text = crd.to_string();
        assert!(
            text.contains("x-kubernetes-validations"),
            "CEL rule missing"
        );
        assert!(
            text.contains("^arn:aws[a-z-]*:iam::"),
            "role ARN pattern missing"
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["region"]));
        let mode = &spec["properties"]["openWebUI"]["properties"]["mode"];
        assert_eq!(mode["enum"], serde_json::json!(["env", "sidecar"]));
    }

    #[test]
    fn a_minimal_spec_deserialises_with_defaults() {
        let spec: BedrockGatewaySpec = serde_json::from_value(serde_json::json!({
            "region": "us-east-1",
            "openWebUI": {"workloadRef": {"name": "open-webui"}}
        }))
        .unwrap();
        let open_web_ui = spec.open_web_ui.unwrap();
        assert_eq!(open_web_ui.mode, WiringMode::Env);
        assert_eq!(
            open_web_ui.workload_ref.unwrap().kind,
            WorkloadKind::Deployment
        );
        assert_eq!(open_web_ui.admin_api, None);
        assert_eq!(spec.replicas, None);
        assert!(!spec.metrics.service_monitor);
    }

    #[test]
    fn the_admin_api_and_embeddings_are_in_the_schema_with_their_rules() {
        let crd = serde_json::to_value(BedrockGateway::crd()).unwrap();
        let open_web_ui = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["openWebUI"];
        assert!(
            open_web_ui.get("required").is_none(),
            "workloadRef is optional"
        );
        let admin = &open_web_ui["properties"]["adminApi"];
        assert_eq!(admin["required"], serde_json::json!(["apiKeySecretRef"]));
        assert_eq!(
            admin["properties"]["prefixId"]["pattern"],
            "^[A-Za-z0-9_-]{1,64}$"
        );
        assert_eq!(
            open_web_ui["properties"]["embeddings"]["required"],
            serde_json::json!(["model"])
        );
        let rules: Vec<&str> = open_web_ui["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| rule["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].contains("has(self.adminApi)"));
        assert_eq!(admin["properties"]["url"]["pattern"], HTTP_URL_PATTERN);
    }

    #[test]
    fn a_spec_with_only_the_admin_api_deserialises() {
        let spec: BedrockGatewaySpec = serde_json::from_value(serde_json::json!({
            "region": "us-east-1",
            "openWebUI": {
                "gatewayUrl": "https://bedrock.example.com/v1",
                "adminApi": {
                    "url": "http://open-webui.ai.svc.cluster.local",
                    "apiKeySecretRef": {"name": "open-webui-admin", "key": "api-key"},
                    "prefixId": "bedrock",
                    "modelIds": ["gpt-4o"]
                },
                "embeddings": {"model": "amazon.titan-embed-text-v2:0"}
            }
        }))
        .unwrap();
        let open_web_ui = spec.open_web_ui.unwrap();
        assert_eq!(open_web_ui.workload_ref, None);
        let admin = open_web_ui.admin_api.unwrap();
        assert_eq!(admin.api_key_secret_ref.name, "open-webui-admin");
        assert_eq!(admin.model_ids, ["gpt-4o"]);
        assert_eq!(
            open_web_ui.embeddings.unwrap().model,
            "amazon.titan-embed-text-v2:0"
        );
    }
}
