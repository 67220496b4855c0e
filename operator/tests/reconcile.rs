//! The operator against a real kube-apiserver and etcd (no kubelet: the tests
//! set Deployment status themselves where readiness matters).

mod support;

use std::sync::Arc;
use std::time::Duration;

use bedrock_gateway_operator::controller::{self, Context, Settings};
use bedrock_gateway_operator::crd::BedrockGateway;
use bedrock_gateway_operator::leader::{LeaderElector, LeaseSettings};
use bedrock_gateway_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::{ControlPlane, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Runs the controller for one namespace until the returned sender is
/// dropped (tests run side by side, each with its own operator); also
/// returns its context, for its metrics and what it keeps in memory.
async fn start_operator(
    client: &Client,
    namespace: &str,
) -> (tokio::sync::oneshot::Sender<()>, Arc<Context>) {
    ControlPlane::shared().install_crds().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Metrics::new().unwrap();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Settings {
            proxy_image: "registry.example/bedrock-gateway-proxy:test".into(),
            resync: Duration::from_secs(300),
            watch_namespace: Some(namespace.to_owned()),
        },
        metrics,
        Some("test".into()),
    ));
    tokio::spawn(controller::run(ctx.clone(), async move {
        let _ = stopped.await;
    }));
    (stop, ctx)
}

fn open_webui(name: &str, env: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "open-webui", "image": "ghcr.io/open-webui/open-webui:main", "env": env}]}
            }
        }
    }))
    .unwrap()
}

fn gateway(name: &str, spec: Value) -> BedrockGateway {
    serde_json::from_value(json!({
        "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn env_of(deployment: &Deployment, container: &str) -> Vec<EnvVar> {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|candidate| candidate.name == container)
        .and_then(|candidate| candidate.env.clone())
        .unwrap_or_default()
}

fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    env_of(deployment, "open-webui")
        .into_iter()
        .find(|var| var.name == name)
        .and_then(|var| var.value)
}

async fn mark_available(client: &Client, namespace: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}})),
    )
    .await
    .unwrap();
}

fn condition(gateway: &BedrockGateway, kind: &str) -> Option<(String, String)> {
    gateway
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == kind)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

fn basic_spec() -> Value {
    json!({
        "region": "us-east-1",
        "aws": {"roleArn": "arn:aws:iam::123456789012:role/bedrock-gateway"},
        "models": {"aliases": {"gpt-4o": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"}},
        "openWebUI": {"workloadRef": {"name": "open-webui"}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_by_the_api_server() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    plane.install_crds().await;
    let namespace = plane.fresh_namespace("invalid").await;
    // Invalid specs cannot even be built as typed objects; send them raw.
    let resource = kube::api::ApiResource::erase::<BedrockGateway>(&());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let raw = |name: String, spec: Value| -> kube::api::DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap()
    };
    let cases = [
        (json!({"region": "nowhere"}), "spec.region"),
        (
            json!({"region": "us-east-1", "aws": {"roleArn": "arn:aws:iam::123456789012:role/x", "serviceAccountName": "sa"}}),
            "set either aws.roleArn",
        ),
        (
            json!({"region": "us-east-1", "aws": {"roleArn": "not-an-arn"}}),
            "spec.aws.roleArn",
        ),
        (
            json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "x"}, "mode": "bogus"}}),
            "spec.openWebUI.mode",
        ),
        (
            json!({"region": "us-east-1", "replicas": -1}),
            "spec.replicas",
        ),
        (
            json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "x", "kind": "DaemonSet"}}}),
            "spec.openWebUI.workloadRef.kind",
        ),
        (json!({"aws": {}}), "spec.region"),
        (
            json!({"region": "us-east-1", "proxy": {"imageUrlAllowCidrs": ["10.0.0.0/8", "intranet"]}}),
            "CIDR notation",
        ),
        (
            json!({"region": "us-east-1", "proxy": {"imageUrlAllowCidrs": ["fd00::/8", "300.1.1.1/8"]}}),
            "CIDR notation",
        ),
    ];
    for (index, (spec, expected)) in cases.into_iter().enumerate() {
        let error = api
            .create(
                &PostParams::default(),
                &raw(format!("bad-{index}"), spec.clone()),
            )
            .await
            .expect_err(&format!("{spec} should be refused"));
        match error {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{spec}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{spec}: '{}' lacks '{expected}'",
                    status.message
                );
            }
            other => panic!("{spec}: unexpected {other:?}"),
        }
    }
    // The rules refuse no valid network.
    let valid = json!({"region": "us-east-1", "proxy": {
        "imageUrlAllowCidrs": ["10.20.0.0/16", "192.168.7.1/32", "fd00::/8", "::1/128"]
    }});
    api.create(&PostParams::default(), &raw("good".into(), valid))
        .await
        .expect("valid CIDRs are accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_gets_its_objects_status_and_open_webui_wiring() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("wired").await;
    let _operator = start_operator(&client, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui", json!([
            {"name": "OPENAI_API_BASE_URLS", "value": "http://pipelines:9099;https://api.openai.com/v1"},
            {"name": "OPENAI_API_KEYS", "value": "0p3n-w3bu!;sk-user"}
        ])))
        .await
        .unwrap();
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(&PostParams::default(), &gateway("team", basic_spec()))
        .await
        .unwrap();

    let proxy = eventually(WAIT, "the proxy Deployment exists", || async {
        deployments
            .get_opt("team-bedrock-gateway")
            .await
            .ok()
            .flatten()
    })
    .await;
    let owner = &proxy.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("BedrockGateway", "team")
    );
    let pod = proxy.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("team-bedrock-gateway")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/bedrock-gateway-proxy:test")
    );
    assert_eq!(
        container
            .security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    assert!(
        container.args.as_ref().unwrap().contains(
            &"--model-alias=gpt-4o=us.anthropic.claude-3-7-sonnet-20250219-v1:0".to_owned()
        )
    );

    let account = Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .get("team-bedrock-gateway")
        .await
        .unwrap();
    assert_eq!(
        account.annotations()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/bedrock-gateway"
    );
    let service = eventually(WAIT, "the Service exists", || async {
        Api::<Service>::namespaced(client.clone(), &namespace)
            .get_opt("team-bedrock-gateway")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get("team-bedrock-gateway-api-key")
        .await
        .unwrap();
    let key = secret.data.as_ref().unwrap()["api-key"].0.clone();
    assert!(key.len() >= 40);
    assert!(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
            .get_opt("team-bedrock-gateway")
            .await
            .unwrap()
            .is_none()
    );

    let url = "http://team-bedrock-gateway.".to_owned() + &namespace + ".svc.cluster.local/v1";
    let wired = eventually(WAIT, "Open WebUI is wired", || async {
        let workload = deployments.get("open-webui").await.ok()?;
        env_value(&workload, "OPENAI_API_BASE_URLS")?
            .contains(&url)
            .then_some(workload)
    })
    .await;
    assert_eq!(
        env_value(&wired, "OPENAI_API_BASE_URLS").unwrap(),
        format!("http://pipelines:9099;https://api.openai.com/v1;{url}")
    );
    assert_eq!(
        env_value(&wired, "OPENAI_API_KEYS").unwrap(),
        "0p3n-w3bu!;sk-user;$(BEDROCK_GATEWAY_TEAM_API_KEY)"
    );
    let key_var = env_of(&wired, "open-webui")
        .into_iter()
        .find(|var| var.name == "BEDROCK_GATEWAY_TEAM_API_KEY")
        .unwrap();
    assert!(
        key_var.value.is_none(),
        "the key is never written in plain text"
    );
    assert_eq!(
        key_var.value_from.unwrap().secret_key_ref.unwrap().name,
        "team-bedrock-gateway-api-key"
    );

    let not_ready = eventually(WAIT, "status is written", || async {
        let current = gateways.get("team").await.ok()?;
        condition(&current, "ProxyAvailable").map(|_| current)
    })
    .await;
    assert_eq!(condition(&not_ready, "Ready").unwrap().0, "False");
    assert_eq!(
        condition(&not_ready, "OpenWebUIWired").unwrap(),
        ("True".into(), "EnvWired".into())
    );
    let status = not_ready.status.as_ref().unwrap();
    assert_eq!(status.url.as_deref(), Some(url.as_str()));
    assert_eq!(
        status.secret_name.as_deref(),
        Some("team-bedrock-gateway-api-key")
    );
    assert_eq!(status.observed_generation, not_ready.metadata.generation);

    mark_available(&client, &namespace, "team-bedrock-gateway").await;
    let ready = eventually(WAIT, "the gateway is Ready", || async {
        let current = gateways.get("team").await.ok()?;
        (condition(&current, "Ready")?.0 == "True").then_some(current)
    })
    .await;
    assert_eq!(ready.status.unwrap().ready_replicas, 1);
    let reasons = eventually(WAIT, "events record the transitions", || async {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(client.clone(), &namespace);
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|event| {
                event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("team")
            })
            .filter_map(|event| event.reason)
            .collect();
        (reasons.iter().any(|r| r == "Wired") && reasons.iter().any(|r| r == "Ready"))
            .then_some(reasons)
    })
    .await;
    assert!(
        !reasons.iter().any(|r| r == "NotReady"),
        "{reasons:?}: no NotReady before the first Ready"
    );

    // A change to the gateway reconciles again: nothing about Open WebUI changes
    // (no rollout) and the generated key is kept.
    let before = deployments.get("open-webui").await.unwrap();
    gateways
        .patch(
            "team",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the PDB appears", || async {
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
            .get_opt("team-bedrock-gateway")
            .await
            .ok()
            .flatten()
    })
    .await;
    eventually(WAIT, "the new generation is observed", || async {
        let current = gateways.get("team").await.ok()?;
        (current.status.as_ref()?.observed_generation == current.metadata.generation).then_some(())
    })
    .await;
    let after = deployments.get("open-webui").await.unwrap();
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "Open WebUI must not roll"
    );
    assert_eq!(after.spec.unwrap().template, before.spec.unwrap().template);
    let secret_after = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get("team-bedrock-gateway-api-key")
        .await
        .unwrap();
    assert_eq!(
        secret_after.data.unwrap()["api-key"].0,
        key,
        "the key is never regenerated"
    );

    // Someone strips the wiring: it comes back.
    let mut stripped = deployments.get("open-webui").await.unwrap();
    let container = &mut stripped
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0];
    container.env = Some(vec![EnvVar {
        name: "WEBUI_NAME".into(),
        value: Some("x".into()),
        ..EnvVar::default()
    }]);
    deployments
        .replace("open-webui", &PostParams::default(), &stripped)
        .await
        .unwrap();
    eventually(WAIT, "the wiring is restored", || async {
        let workload = deployments.get("open-webui").await.ok()?;
        env_value(&workload, "OPENAI_API_BASE_URLS")?
            .contains(&url)
            .then_some(())
    })
    .await;

    // Deleting the gateway removes exactly what it added.
    gateways
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "the gateway is gone", || async {
        gateways.get_opt("team").await.ok()?.is_none().then_some(())
    })
    .await;
    let unwired = deployments.get("open-webui").await.unwrap();
    assert_eq!(env_value(&unwired, "WEBUI_NAME").as_deref(), Some("x"));
    assert!(
        env_of(&unwired, "open-webui")
            .iter()
            .all(|var| !var.name.starts_with("BEDROCK_GATEWAY")
                && var.name != "OPENAI_API_BASE_URLS")
    );
    assert!(
        unwired
            .annotations()
            .keys()
            .all(|key| !key.starts_with("bedrock-gateway.io/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_restores_the_users_connections() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("restore").await;
    let _operator = start_operator(&client, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let original_env = json!([
        {"name": "OPENAI_API_BASE_URLS", "value": "https://api.openai.com/v1"},
        {"name": "OPENAI_API_KEYS", "value": "sk-user"}
    ]);
    deployments
        .create(
            &PostParams::default(),
            &open_webui("open-webui", original_env),
        )
        .await
        .unwrap();
    let original = deployments.get("open-webui").await.unwrap();
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(&PostParams::default(), &gateway("g", basic_spec()))
        .await
        .unwrap();
    eventually(WAIT, "wired", || async {
        let workload = deployments.get("open-webui").await.ok()?;
        env_value(&workload, "OPENAI_API_KEYS")?
            .contains("BEDROCK_GATEWAY_G_API_KEY")
            .then_some(())
    })
    .await;
    gateways
        .delete("g", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "the gateway is gone", || async {
        gateways.get_opt("g").await.ok()?.is_none().then_some(())
    })
    .await;
    let restored = deployments.get("open-webui").await.unwrap();
    assert_eq!(
        restored.spec.unwrap().template,
        original.spec.unwrap().template
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_mode_runs_the_proxy_inside_open_webui() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("sidecar").await;
    let _operator = start_operator(&client, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui", json!([])))
        .await
        .unwrap();
    let mut spec = basic_spec();
    spec["openWebUI"]["mode"] = json!("sidecar");
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(&PostParams::default(), &gateway("side", spec))
        .await
        .unwrap();
    let wired = eventually(WAIT, "the sidecar is injected", || async {
        let workload = deployments.get("open-webui").await.ok()?;
        let pod = workload.spec.as_ref()?.template.spec.as_ref()?;
        pod.containers
            .iter()
            .any(|container| container.name == "bedrock-gateway-proxy")
            .then_some(workload)
    })
    .await;
    assert_eq!(
        env_value(&wired, "OPENAI_API_BASE_URLS").as_deref(),
        Some("http://127.0.0.1:8089/v1")
    );
    let current = eventually(WAIT, "status", || async {
        let current = gateways.get("side").await.ok()?;
        current.status.clone()?.url.map(|_| current)
    })
    .await;
    assert_eq!(
        current.status.unwrap().url.as_deref(),
        Some("http://127.0.0.1:8089/v1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pieces_are_conditions_not_crashes() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("missing").await;
    let _operator = start_operator(&client, &namespace).await;
    let mut spec = basic_spec();
    spec["metrics"] = json!({"serviceMonitor": true});
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(&PostParams::default(), &gateway("lonely", spec))
        .await
        .unwrap();
    let current = eventually(WAIT, "conditions explain what is missing", || async {
        let current = gateways.get("lonely").await.ok()?;
        condition(&current, "OpenWebUIWired").map(|_| current)
    })
    .await;
    assert_eq!(
        condition(&current, "OpenWebUIWired").unwrap(),
        ("False".into(), "WorkloadNotFound".into())
    );
    assert_eq!(
        condition(&current, "ServiceMonitorReady").unwrap(),
        ("False".into(), "PrometheusOperatorMissing".into())
    );
    assert_eq!(condition(&current, "Ready").unwrap().0, "False");

    // The workload appearing later gets wired on a retry.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui", json!([])))
        .await
        .unwrap();
    eventually(WAIT, "wired once the workload exists", || async {
        let current = gateways.get("lonely").await.ok()?;
        (condition(&current, "OpenWebUIWired")?.0 == "True").then_some(())
    })
    .await;

    // A user-supplied key Secret that does not exist is a condition too.
    let mut with_secret = basic_spec();
    with_secret["apiKey"] = json!({"secretRef": {"name": "absent", "key": "k"}});
    gateways
        .create(&PostParams::default(), &gateway("keyless", with_secret))
        .await
        .unwrap();
    eventually(WAIT, "the missing Secret is reported", || async {
        let current = gateways.get("keyless").await.ok()?;
        (condition(&current, "ProxyAvailable")? == ("False".into(), "SecretNotFound".into()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_secret_is_recreated_and_rolls_the_proxy() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("rekey").await;
    let _operator = start_operator(&client, &namespace).await;
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(
            &PostParams::default(),
            &gateway("k", json!({"region": "us-east-1"})),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let hash_of = |deployment: &Deployment| {
        deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["bedrock-gateway.io/config-hash"]
            .clone()
    };
    let first = eventually(WAIT, "the key exists", || async {
        secrets
            .get_opt("k-bedrock-gateway-api-key")
            .await
            .ok()
            .flatten()
    })
    .await;
    let first_hash = eventually(WAIT, "the proxy exists", || async {
        deployments
            .get_opt("k-bedrock-gateway")
            .await
            .ok()
            .flatten()
    })
    .await;
    let first_hash = hash_of(&first_hash);
    secrets
        .delete("k-bedrock-gateway-api-key", &DeleteParams::default())
        .await
        .unwrap();
    let second = eventually(WAIT, "a new key exists", || async {
        let secret = secrets
            .get_opt("k-bedrock-gateway-api-key")
            .await
            .ok()
            .flatten()?;
        (secret.uid() != first.uid()).then_some(secret)
    })
    .await;
    assert_ne!(
        second.data.unwrap()["api-key"],
        first.data.unwrap()["api-key"]
    );
    eventually(WAIT, "the proxy pods roll for the new key", || async {
        let deployment = deployments.get("k-bedrock-gateway").await.ok()?;
        (hash_of(&deployment) != first_hash).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_passes_to_the_other_replica_when_the_leader_stops() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("lease").await;
    let settings = |identity: &str| LeaseSettings {
        namespace: namespace.clone(),
        name: "bedrock-gateway-operator".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(500),
    };
    let first = LeaderElector::new(client.clone(), settings("replica-a"));
    let second = LeaderElector::new(client.clone(), settings("replica-b"));
    assert!(first.try_acquire().await.unwrap());
    assert!(
        !second.try_acquire().await.unwrap(),
        "only one leader at a time"
    );
    assert!(first.try_acquire().await.unwrap(), "the leader renews");
    // replica-a stops renewing; replica-b takes over once the lease expires.
    tokio::time::timeout(Duration::from_secs(10), second.acquire())
        .await
        .expect("replica-b became leader");
    assert!(!first.try_acquire().await.unwrap(), "the old leader is out");
}

/// Only a change of the spec (or of the finalizers, or a deletion) makes the
/// gateway itself a reason to reconcile: the status the reconcile writes, a
/// status written by anyone else, and labels are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_label_changes_do_not_trigger_reconciles() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("quiet").await;
    let (_operator, ctx) = start_operator(&client, &namespace).await;
    let metrics = &ctx.metrics;
    let reconciles = || {
        metrics
            .reconciliations
            .with_label_values(&["BedrockGateway"])
            .get()
    };
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(
            &PostParams::default(),
            &gateway("quiet", json!({"region": "us-east-1"})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the proxy Deployment exists", || async {
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt("quiet-bedrock-gateway")
            .await
            .ok()
            .flatten()
    })
    .await;
    mark_available(&client, &namespace, "quiet-bedrock-gateway").await;
    let ready = eventually(WAIT, "the gateway is Ready", || async {
        let current = gateways.get("quiet").await.ok()?;
        (condition(&current, "Ready")? == ("True".into(), "Ready".into())).then_some(current)
    })
    .await;
    // Settled: nothing is left to do until the resync, minutes away.
    let mut settled = reconciles();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciles();
        if now == settled {
            break;
        }
        settled = now;
    }

    let mut status = serde_json::to_value(ready.status.as_ref().unwrap()).unwrap();
    status["readyReplicas"] = json!(7);
    gateways
        .patch_status(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    gateways
        .patch(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "ai"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reconciles(), settled, "a status or label change reconciled");

    gateways
        .patch(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let edited = eventually(WAIT, "the spec change is reconciled", || async {
        let current = gateways.get("quiet").await.ok()?;
        let status = current.status.as_ref()?;
        (status.observed_generation == current.metadata.generation).then_some(current)
    })
    .await;
    assert!(reconciles() > settled);
    assert_eq!(
        edited.status.unwrap().ready_replicas,
        1,
        "the reconcile of the spec change wrote the status again"
    );
}

/// A reconcile with nothing to change makes no server-side apply, while a
/// spec change, including one that only drops a field, and a PDB no longer
/// wanted still reach the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_objects_are_not_applied_again_but_changes_are() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("skip").await;
    let (_operator, ctx) = start_operator(&client, &namespace).await;
    let metrics = &ctx.metrics;
    let skipped = |kind: &str| metrics.applies_skipped.with_label_values(&[kind]).get();
    let reconciles = || {
        metrics
            .reconciliations
            .with_label_values(&["BedrockGateway"])
            .get()
    };
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui", json!([])))
        .await
        .unwrap();
    let mut spec = basic_spec();
    spec["nodeSelector"] = json!({"pool": "ai"});
    spec["replicas"] = json!(2);
    gateways
        .create(&PostParams::default(), &gateway("lean", spec))
        .await
        .unwrap();
    eventually(WAIT, "the proxy Deployment and its PDB exist", || async {
        deployments.get_opt("lean-bedrock-gateway").await.ok()??;
        budgets.get_opt("lean-bedrock-gateway").await.ok()?
    })
    .await;
    mark_available(&client, &namespace, "lean-bedrock-gateway").await;
    eventually(WAIT, "the gateway is Ready", || async {
        let current = gateways.get("lean").await.ok()?;
        (condition(&current, "Ready")? == ("True".into(), "Ready".into())).then_some(())
    })
    .await;

    // Of Secrets the operator keeps metadata only, without the copy of the
    // data that `kubectl apply` leaves in an annotation.
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "applied-by-kubectl", "annotations": {"team": "ai",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"api-key\":\"c2stc2VjcmV0\"}}"}},
                "data": {"api-key": "c2stc2VjcmV0"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let kept = eventually(WAIT, "the Secret is seen", || async {
        ctx.cache
            .secrets
            .get(&ObjectRef::new("applied-by-kubectl").within(&namespace))
    })
    .await;
    assert_eq!(
        kept.annotations().get("team").map(String::as_str),
        Some("ai")
    );
    assert!(
        !serde_json::to_string(kept.as_ref())
            .unwrap()
            .contains("c2stc2VjcmV0"),
        "Secret data kept in memory: {kept:?}"
    );

    // Someone else's label on the Service makes the operator look again.
    let before = (
        reconciles(),
        skipped("Deployment"),
        skipped("Service"),
        skipped("ServiceAccount"),
        skipped("PodDisruptionBudget"),
    );
    services
        .patch(
            "lean-bedrock-gateway",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "lean-bedrock-gateway", "labels": {"team": "ai"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the Service change is reconciled", || async {
        (reconciles() > before.0).then_some(())
    })
    .await;
    eventually(WAIT, "every owned object's apply is left out", || async {
        (skipped("Deployment") > before.1
            && skipped("Service") > before.2
            && skipped("ServiceAccount") > before.3
            && skipped("PodDisruptionBudget") > before.4)
            .then_some(())
    })
    .await;

    // Dropping the node selector leaves a Deployment that holds everything
    // still wanted, yet the selector must come off; going back to one
    // replica must delete the PDB.
    gateways
        .patch(
            "lean",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeSelector": null}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the node selector is gone", || async {
        let deployment = deployments.get("lean-bedrock-gateway").await.ok()?;
        let pod = deployment.spec?.template.spec?;
        pod.node_selector
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;
    gateways
        .patch(
            "lean",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the PDB is deleted", || async {
        budgets
            .get_opt("lean-bedrock-gateway")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}
