//! Pure builders of the objects a `BedrockGateway` owns.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crd::BedrockGateway;

pub const FIELD_MANAGER: &str = "bedrock-gateway-operator";
pub const PROXY_PORT: i32 = 8080;
pub const METRICS_PORT: i32 = 9090;
pub const SERVICE_PORT: i32 = 80;
/// Ports of the proxy inside an Open WebUI pod (Open WebUI itself uses 8080).
pub const SIDECAR_PORT: i32 = 8089;
pub const SIDECAR_METRICS_PORT: i32 = 9089;
pub const API_KEY_SECRET_KEY: &str = "api-key";
pub const KEY_MOUNT_DIR: &str = "/etc/bedrock-gateway/keys";
pub const CONFIG_HASH_ANNOTATION: &str = "bedrock-gateway.io/config-hash";
pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
pub const PROXY_CONTAINER: &str = "bedrock-gateway-proxy";
const NONROOT_UID: i64 = 65532;

/// Names of everything one gateway owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayNames {
    pub base: String,
    pub secret: String,
    pub service_account: String,
}

impl GatewayNames {
    pub fn of(gateway: &BedrockGateway) -> Self {
        let base = format!("{}-bedrock-gateway", gateway.name_any());
        let service_account = gateway
            .spec
            .aws
            .service_account_name
            .clone()
            .unwrap_or_else(|| base.clone());
        let secret = gateway
            .spec
            .api_key
            .secret_ref
            .as_ref()
            .map(|reference| reference.name.clone())
            .unwrap_or_else(|| format!("{base}-api-key"));
        Self {
            base,
            secret,
            service_account,
        }
    }
}

/// The Secret key the API key is read from.
pub fn api_key_secret_key(gateway: &BedrockGateway) -> String {
    gateway
        .spec
        .api_key
        .secret_ref
        .as_ref()
        .map(|reference| reference.key.clone())
        .unwrap_or_else(|| API_KEY_SECRET_KEY.to_owned())
}

pub fn labels(gateway: &BedrockGateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "bedrock-gateway-proxy".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), gateway.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

fn selector_labels(gateway: &BedrockGateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "bedrock-gateway-proxy".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), gateway.name_any()),
    ])
}

fn owner(gateway: &BedrockGateway) -> Vec<OwnerReference> {
    gateway.controller_owner_ref(&()).into_iter().collect()
}

fn metadata(gateway: &BedrockGateway, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: gateway.namespace(),
        labels: Some(labels(gateway)),
        owner_references: Some(owner(gateway)),
        ..ObjectMeta::default()
    }
}

/// The ServiceAccount the operator creates, unless the spec names an existing one.
pub fn service_account(gateway: &BedrockGateway) -> Option<ServiceAccount> {
    if gateway.spec.aws.service_account_name.is_some() {
        return None;
    }
    let names = GatewayNames::of(gateway);
    let mut meta = metadata(gateway, &names.service_account);
    if let Some(role_arn) = &gateway.spec.aws.role_arn {
        meta.annotations = Some(BTreeMap::from([(
            IRSA_ANNOTATION.to_owned(),
            role_arn.clone(),
        )]));
    }
    Some(ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// The Secret holding a generated API key.
pub fn generated_secret(gateway: &BedrockGateway, api_key: &str) -> Secret {
    let names = GatewayNames::of(gateway);
    Secret {
        metadata: metadata(gateway, &names.secret),
        string_data: Some(BTreeMap::from([(
            API_KEY_SECRET_KEY.to_owned(),
            api_key.to_owned(),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// A new random API key: 256 bits from the OS generator, URL-safe.
pub fn new_api_key() -> String {
    let random: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    use base64::Engine;
    format!(
        "bgw-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(random))
    )
}

/// The proxy's command-line arguments for a gateway.
pub fn proxy_args(
    gateway: &BedrockGateway,
    listen_port: i32,
    metrics_port: i32,
    loopback: bool,
) -> Vec<String> {
    let host = if loopback { "127.0.0.1" } else { "0.0.0.0" };
    let spec = &gateway.spec;
    let mut args = vec![
        format!("--listen={host}:{listen_port}"),
        format!("--metrics-listen={host}:{metrics_port}"),
        format!("--region={}", spec.region),
        format!("--api-keys-file={KEY_MOUNT_DIR}/{API_KEY_SECRET_KEY}"),
    ];
    if !spec.models.allow.is_empty() {
        args.push(format!("--model-allow={}", spec.models.allow.join(",")));
    }
    if !spec.models.aliases.is_empty() {
        let aliases: Vec<String> = spec
            .models
            .aliases
            .iter()
            .map(|(alias, target)| format!("{alias}={target}"))
            .collect();
        args.push(format!("--model-alias={}", aliases.join(",")));
    }
    if let Some(role) = &spec.aws.assume_role_arn {
        args.push(format!("--assume-role-arn={role}"));
    }
    if let Some(external_id) = &spec.aws.external_id {
        args.push(format!("--assume-role-external-id={external_id}"));
    }
    if spec.proxy.prompt_caching {
        args.push("--prompt-caching".to_owned());
    }
    if let Some(guardrail) = &spec.proxy.guardrail {
        args.push(format!("--guardrail-id={}", guardrail.id));
        args.push(format!("--guardrail-version={}", guardrail.version));
    }
    if let Some(limit) = spec.proxy.key_requests_per_minute {
        args.push(format!("--key-requests-per-minute={limit}"));
    }
    if let Some(limit) = spec.proxy.key_max_concurrent_streams {
        args.push(format!("--key-max-concurrent-streams={limit}"));
    }
    if let Some(fetch) = spec.proxy.image_url_fetch {
        args.push(format!("--image-url-fetch={fetch}"));
    }
    if !spec.proxy.image_url_allow_cidrs.is_empty() {
        args.push(format!(
            "--image-url-allow-cidr={}",
            spec.proxy.image_url_allow_cidrs.join(",")
        ));
    }
    args
}

fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("256Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Name of the volume carrying the API key into the proxy container.
pub fn key_volume_name(gateway: &BedrockGateway) -> String {
    format!("{}-api-key", GatewayNames::of(gateway).base)
}

/// The volume with the API key file, mounted from the Secret.
pub fn key_volume(gateway: &BedrockGateway) -> Volume {
    Volume {
        name: key_volume_name(gateway),
        secret: Some(SecretVolumeSource {
            secret_name: Some(GatewayNames::of(gateway).secret),
            items: Some(vec![KeyToPath {
                key: api_key_secret_key(gateway),
                path: API_KEY_SECRET_KEY.to_owned(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The proxy container, for its own Deployment or as an Open WebUI sidecar.
pub fn proxy_container(gateway: &BedrockGateway, image: &str, sidecar: bool) -> Container {
    let (port, metrics_port) = if sidecar {
        (SIDECAR_PORT, SIDECAR_METRICS_PORT)
    } else {
        (PROXY_PORT, METRICS_PORT)
    };
    let mut env = vec![EnvVar {
        name: "AWS_REGION".to_owned(),
        value: Some(gateway.spec.region.clone()),
        ..EnvVar::default()
    }];
    if let Some(level) = &gateway.spec.proxy.log_level {
        env.push(EnvVar {
            name: "RUST_LOG".to_owned(),
            value: Some(level.clone()),
            ..EnvVar::default()
        });
    }
    Container {
        name: PROXY_CONTAINER.to_owned(),
        image: Some(
            gateway
                .spec
                .image
                .clone()
                .unwrap_or_else(|| image.to_owned()),
        ),
        args: Some(proxy_args(gateway, port, metrics_port, sidecar)),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some(if sidecar { "bgw-http" } else { "http" }.to_owned()),
                container_port: port,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(if sidecar { "bgw-metrics" } else { "metrics" }.to_owned()),
                container_port: metrics_port,
                ..ContainerPort::default()
            },
        ]),
        liveness_probe: Some(http_probe("/healthz", port, 10)),
        readiness_probe: Some(http_probe("/readyz", port, 5)),
        resources: Some(
            gateway
                .spec
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT_UID),
            run_as_group: Some(NONROOT_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: key_volume_name(gateway),
            mount_path: KEY_MOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// A digest of everything that should roll the proxy pods when it changes:
/// the proxy container and the API key Secret's content.
pub fn config_hash(container: &Container, secret_data_digest: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(container).unwrap_or_default());
    hasher.update(secret_data_digest.as_bytes());
    hex_prefix(&hasher.finalize())
}

/// The first 8 bytes of a digest, in hex.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A digest of a Secret's data (never the data itself).
pub fn secret_digest(secret: &Secret) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in secret.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update(&value.0);
    }
    hex_prefix(&hasher.finalize())
}

pub fn deployment(gateway: &BedrockGateway, image: &str, secret_data_digest: &str) -> Deployment {
    let names = GatewayNames::of(gateway);
    let container = proxy_container(gateway, image, false);
    let hash = config_hash(&container, secret_data_digest);
    let mut pod_labels = selector_labels(gateway);
    pod_labels.extend(labels(gateway));
    Deployment {
        metadata: metadata(gateway, &names.base),
        spec: Some(DeploymentSpec {
            replicas: Some(gateway.spec.replicas.unwrap_or(1)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(gateway)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.service_account),
                    // IRSA and Pod Identity mount their own projected tokens.
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(vec![key_volume(gateway)]),
                    // The restricted Pod Security Standard, at pod level too,
                    // so it also covers containers that admission injects.
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT_UID),
                        run_as_group: Some(NONROOT_UID),
                        fs_group: Some(NONROOT_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(45),
                    node_selector: gateway.spec.node_selector.clone(),
                    tolerations: gateway.spec.tolerations.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub fn service(gateway: &BedrockGateway) -> Service {
    let names = GatewayNames::of(gateway);
    Service {
        metadata: metadata(gateway, &names.base),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(gateway)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("metrics".to_owned()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String("metrics".to_owned())),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A PodDisruptionBudget keeping one proxy up, when there is more than one.
pub fn pod_disruption_budget(gateway: &BedrockGateway) -> Option<PodDisruptionBudget> {
    if gateway.spec.replicas.unwrap_or(1) <= 1 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(gateway, &GatewayNames::of(gateway).base),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(gateway)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// A Prometheus Operator ServiceMonitor (applied as a dynamic object).
pub fn service_monitor(gateway: &BedrockGateway) -> Value {
    let names = GatewayNames::of(gateway);
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(gateway, &names.base),
        "spec": {
            "selector": {"matchLabels": selector_labels(gateway)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        },
    })
}

/// The in-cluster base URL of the gateway's API.
pub fn service_url(gateway: &BedrockGateway) -> String {
    format!(
        "http://{}.{}.svc.cluster.local/v1",
        GatewayNames::of(gateway).base,
        gateway.namespace().unwrap_or_else(|| "default".to_owned())
    )
}

pub fn sidecar_url() -> String {
    format!("http://127.0.0.1:{SIDECAR_PORT}/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ApiKeySpec, AwsSpec, BedrockGatewaySpec, GuardrailRef, SecretKeyRef};

    fn gateway(spec: BedrockGatewaySpec) -> BedrockGateway {
        let mut gateway = BedrockGateway::new("team-a", spec);
        gateway.metadata.namespace = Some("ai".into());
        gateway.metadata.uid = Some("uid-1".into());
        gateway
    }

    fn basic() -> BedrockGatewaySpec {
        BedrockGatewaySpec {
            region: "eu-west-1".into(),
            aws: AwsSpec {
                role_arn: Some("arn:aws:iam::123456789012:role/bedrock".into()),
                ..AwsSpec::default()
            },
            ..BedrockGatewaySpec::default()
        }
    }

    #[test]
    fn names_follow_the_gateway() {
        let names = GatewayNames::of(&gateway(basic()));
        assert_eq!(names.base, "team-a-bedrock-gateway");
        assert_eq!(names.secret, "team-a-bedrock-gateway-api-key");
        assert_eq!(names.service_account, "team-a-bedrock-gateway");
        let mut spec = basic();
        spec.aws = AwsSpec {
            service_account_name: Some("pod-identity-sa".into()),
            ..AwsSpec::default()
        };
        spec.api_key = ApiKeySpec {
            secret_ref: Some(SecretKeyRef {
                name: "mine".into(),
                key: "token".into(),
            }),
        };
        let custom = gateway(spec);
        let names = GatewayNames::of(&custom);
        assert_eq!(
            (names.secret.as_str(), names.service_account.as_str()),
            ("mine", "pod-identity-sa")
        );
        assert_eq!(api_key_secret_key(&custom), "token");
        assert!(service_account(&custom).is_none());
    }

    #[test]
    fn the_service_account_carries_the_irsa_role_and_an_owner() {
        let account = service_account(&gateway(basic())).unwrap();
        assert_eq!(
            account.metadata.annotations.unwrap()[IRSA_ANNOTATION],
            "arn:aws:iam::123456789012:role/bedrock"
        );
        let owners = account.metadata.owner_references.unwrap();
        assert_eq!(owners[0].kind, "BedrockGateway");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(account.metadata.namespace.as_deref(), Some("ai"));
    }

    /// The restricted Pod Security Standard, plus a read-only root, no API
    /// token and a memory limit, for the proxy pod and the sidecar container.
    #[test]
    fn the_proxy_pod_meets_the_restricted_pod_security_standard() {
        let deployment = deployment(&gateway(basic()), "registry/proxy:1", "digest");
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        // IRSA and Pod Identity inject their own projected token volumes; the
        // proxy never calls the Kubernetes API.
        assert_eq!(pod.automount_service_account_token, Some(false));
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.run_as_user, Some(NONROOT_UID));
        assert_eq!(
            pod_security
                .seccomp_profile
                .as_ref()
                .map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
        let sidecar = proxy_container(&gateway(basic()), "registry/proxy:1", true);
        for container in [&pod.containers[0], &sidecar] {
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(security.run_as_non_root, Some(true));
            assert_ne!(security.run_as_user, Some(0));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.privileged, None);
            let capabilities = security.capabilities.as_ref().unwrap();
            assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
            assert_eq!(capabilities.add, None);
            assert_eq!(
                security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault")
            );
            let resources = container.resources.as_ref().unwrap();
            assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
            assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
            assert!(
                container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .all(|mount| mount.read_only == Some(true))
            );
        }
    }

    #[test]
    fn the_deployment_is_locked_down_and_probed() {
        let deployment = deployment(&gateway(basic()), "registry/proxy:1", "digest");
        let pod = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("registry/proxy:1"));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let liveness = container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        let readiness = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (liveness.path.as_deref(), readiness.path.as_deref()),
            (Some("/healthz"), Some("/readyz"))
        );
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("team-a-bedrock-gateway")
        );
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--region=eu-west-1".to_owned()));
        assert!(args.contains(&"--api-keys-file=/etc/bedrock-gateway/keys/api-key".to_owned()));
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("team-a-bedrock-gateway-api-key")
        );
        let env = container.env.as_ref().unwrap();
        assert!(
            env.iter()
                .all(|var| var.name != "AWS_ACCESS_KEY_ID" && var.name != "AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn the_pod_template_hash_changes_with_config_and_secret_only() {
        let hash_of = |deployment: Deployment| {
            deployment
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let base = hash_of(deployment(&gateway(basic()), "img", "a"));
        assert_eq!(base, hash_of(deployment(&gateway(basic()), "img", "a")));
        assert_ne!(base, hash_of(deployment(&gateway(basic()), "img", "b")));
        let mut changed = basic();
        changed.models.allow = vec!["anthropic.*".into()];
        assert_ne!(base, hash_of(deployment(&gateway(changed), "img", "a")));
        let mut scaled = basic();
        scaled.replicas = Some(3);
        assert_eq!(
            base,
            hash_of(deployment(&gateway(scaled), "img", "a")),
            "scaling does not roll pods"
        );
    }

    #[test]
    fn proxy_settings_become_flags() {
        let mut spec = basic();
        spec.models.allow = vec!["anthropic.*".into(), "us.*".into()];
        spec.models.aliases.insert(
            "gpt-4o".into(),
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0".into(),
        );
        spec.aws.assume_role_arn = Some("arn:aws:iam::210987654321:role/x".into());
        spec.aws.external_id = Some("ext".into());
        spec.proxy.prompt_caching = true;
        spec.proxy.guardrail = Some(GuardrailRef {
            id: "gr".into(),
            version: "2".into(),
        });
        spec.proxy.key_requests_per_minute = Some(120);
        spec.proxy.key_max_concurrent_streams = Some(8);
        spec.proxy.image_url_fetch = Some(false);
        spec.proxy.image_url_allow_cidrs = vec!["10.20.0.0/16".into(), "fd00::/8".into()];
        let args = proxy_args(&gateway(spec), SIDECAR_PORT, SIDECAR_METRICS_PORT, true);
        for expected in [
            "--listen=127.0.0.1:8089",
            "--metrics-listen=127.0.0.1:9089",
            "--model-allow=anthropic.*,us.*",
            "--model-alias=gpt-4o=us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "--assume-role-arn=arn:aws:iam::210987654321:role/x",
            "--assume-role-external-id=ext",
            "--prompt-caching",
            "--guardrail-id=gr",
            "--guardrail-version=2",
            "--key-requests-per-minute=120",
            "--key-max-concurrent-streams=8",
            "--image-url-fetch=false",
            "--image-url-allow-cidr=10.20.0.0/16,fd00::/8",
        ] {
            assert!(
                args.contains(&expected.to_owned()),
                "{expected} missing from {args:?}"
            );
        }
    }

    #[test]
    fn pdb_only_for_several_replicas_and_urls() {
        assert!(pod_disruption_budget(&gateway(basic())).is_none());
        let mut spec = basic();
        spec.replicas = Some(2);
        let pdb = pod_disruption_budget(&gateway(spec)).unwrap();
        assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(1)));
        assert_eq!(
            service_url(&gateway(basic())),
            "http://team-a-bedrock-gateway.ai.svc.cluster.local/v1"
        );
        assert_eq!(
            service(&gateway(basic())).spec.unwrap().ports.unwrap()[0].port,
            80
        );
        let monitor = service_monitor(&gateway(basic()));
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let first = new_api_key();
        let second = new_api_key();
        assert_ne!(first, second);
        assert!(first.len() >= 40, "{first}");
        assert!(first.starts_with("bgw-"));
        let secret = generated_secret(&gateway(basic()), &first);
        assert_eq!(secret.string_data.unwrap()[API_KEY_SECRET_KEY], first);
    }
}
