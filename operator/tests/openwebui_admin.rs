//! `openWebUI.adminApi` and `openWebUI.embeddings` against a real kube-apiserver: the schema's
//! rules as the API server applies them, and the operator finding Open WebUI's URL and admin
//! key from real objects. (Registration in a real Open WebUI is tested by
//! tests/openwebui/test_admin_wiring.py.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use bedrock_gateway_operator::controller::{self, Context, Settings};
use bedrock_gateway_operator::crd::BedrockGateway;
use bedrock_gateway_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::ControlPlane;

const WAIT: Duration = Duration::from_secs(60);

fn raw(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn admin_api(extra: Value) -> Value {
    let mut admin = json!({"apiKeySecretRef": {"name": "open-webui-admin", "key": "api-key"}});
    admin
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_enforces_the_open_webui_rules() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    plane.install_crds().await;
    let namespace = plane.fresh_namespace("owui-rules").await;
    let resource = kube::api::ApiResource::erase::<BedrockGateway>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let workload = json!({"name": "open-webui"});
    let refused = [
        (json!({}), "needs workloadRef"),
        (
            json!({"mode": "sidecar", "adminApi": admin_api(json!({"url": "http://owui"}))}),
            "sidecar needs openWebUI.workloadRef",
        ),
        (
            json!({"adminApi": admin_api(json!({}))}),
            "adminApi.url is required",
        ),
        (
            json!({"workloadRef": workload, "mode": "sidecar", "gatewayUrl": "http://gw/v1"}),
            "gatewayUrl does not apply to sidecar",
        ),
        (
            json!({"workloadRef": workload, "gatewayUrl": "http://gw/v1/"}),
            "spec.openWebUI.gatewayUrl",
        ),
        (
            json!({"workloadRef": workload, "gatewayUrl": "gw:80/v1"}),
            "spec.openWebUI.gatewayUrl",
        ),
        (
            json!({"adminApi": admin_api(json!({"url": "http://owui/"}))}),
            "spec.openWebUI.adminApi.url",
        ),
        (
            json!({"adminApi": admin_api(json!({"url": "http://owui", "prefixId": "a.b"}))}),
            "spec.openWebUI.adminApi.prefixId",
        ),
        (
            json!({"adminApi": {"url": "http://owui"}}),
            "spec.openWebUI.adminApi.apiKeySecretRef",
        ),
        (
            json!({"workloadRef": workload, "embeddings": {"model": ""}}),
            "spec.openWebUI.embeddings.model",
        ),
    ];
    for (index, (open_web_ui, expected)) in refused.into_iter().enumerate() {
        let spec = json!({"region": "us-east-1", "openWebUI": open_web_ui});
        let error = api
            .create(
                &PostParams::default(),
                &raw(&format!("bad-{index}"), spec.clone()),
            )
            .await
            .expect_err(&format!("{spec} should be refused"));
        match error {
            kube::Error::Api(status) => assert!(
                status.code == 422 && status.message.contains(expected),
                "{spec}: '{}' lacks '{expected}'",
                status.message
            ),
            other => panic!("{spec}: unexpected {other:?}"),
        }
    }
    let accepted = [
        json!({"adminApi": admin_api(json!({"url": "https://owui.example.com/sub/path", "prefixId": "bedrock_1", "modelIds": ["gpt-4o"]})),
               "gatewayUrl": "https://bedrock.example.com/v1",
               "embeddings": {"model": "amazon.titan-embed-text-v2:0"}}),
        json!({"workloadRef": workload, "adminApi": admin_api(json!({}))}),
        json!({"workloadRef": workload, "mode": "sidecar", "adminApi": admin_api(json!({}))}),
        json!({"workloadRef": workload}),
    ];
    for (index, open_web_ui) in accepted.into_iter().enumerate() {
        let spec = json!({"region": "us-east-1", "openWebUI": open_web_ui});
        api.create(
            &PostParams::default(),
            &raw(&format!("good-{index}"), spec.clone()),
        )
        .await
        .unwrap_or_else(|error| panic!("{spec} should be accepted: {error}"));
    }
}

async fn start_operator(client: &Client, namespace: &str) -> tokio::sync::oneshot::Sender<()> {
    ControlPlane::shared().install_crds().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Settings {
            proxy_image: "registry.example/bedrock-gateway-proxy:test".into(),
            resync: Duration::from_secs(300),
            watch_namespace: Some(namespace.to_owned()),
        },
        Metrics::new().unwrap(),
        Some("test".into()),
    ));
    tokio::spawn(controller::run(ctx, async move {
        let _ = stopped.await;
    }));
    stop
}

async fn open_webui_condition(api: &Api<BedrockGateway>, name: &str) -> Option<(String, String)> {
    let gateway = api.get_opt(name).await.ok()??;
    gateway
        .status?
        .conditions
        .into_iter()
        .find(|condition| condition.type_ == "OpenWebUIWired")
        .map(|condition| (condition.reason, condition.message))
}

async fn wait_for_reason(api: &Api<BedrockGateway>, name: &str, reason: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = open_webui_condition(api, name).await;
        if let Some((found, message)) = &seen
            && found == reason
        {
            return message.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: waiting for {reason}, last {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_webuis_url_and_admin_key_come_from_the_namespace() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("owui-target").await;
    let _operator = start_operator(&client, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "open-webui"},
                "spec": {
                    "selector": {"matchLabels": {"app": "open-webui"}},
                    "template": {
                        "metadata": {"labels": {"app": "open-webui", "tier": "web"}},
                        "spec": {"containers": [{"name": "open-webui", "image": "ghcr.io/open-webui/open-webui:0.12.4"}]}
                    }
                }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let gateway: BedrockGateway = serde_json::from_value(json!({
        "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
        "metadata": {"name": "team"},
        "spec": {
            "region": "us-east-1",
            "openWebUI": {
                "workloadRef": {"name": "open-webui"},
                "adminApi": {"apiKeySecretRef": {"name": "open-webui-admin", "key": "api-key"}}
            }
        }
    }))
    .unwrap();
    gateways
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
    let message = wait_for_reason(&gateways, "team", "OpenWebUIURLUnknown").await;
    assert!(message.contains("no Service"), "{message}");

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "open-webui"},
                "spec": {"selector": {"app": "open-webui"}, "ports": [{"name": "http", "port": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // The new Service sets off a reconcile of the gateway looking for it.
    let message = wait_for_reason(&gateways, "team", "AdminKeySecretNotFound").await;
    assert!(message.contains("open-webui-admin"), "{message}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "open-webui-admin"},
                "stringData": {"other": "x"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    wait_for_reason(&gateways, "team", "AdminKeySecretKeyMissing").await;
    secrets
        .replace(
            "open-webui-admin",
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "open-webui-admin", "resourceVersion": secrets.get("open-webui-admin").await.unwrap().metadata.resource_version},
                "stringData": {"api-key": "sk-admin-of-the-test\n"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // The URL from the Service: no cluster DNS here, so Open WebUI cannot be reached there,
    // which names the URL the operator derived.
    let message = wait_for_reason(&gateways, "team", "OpenWebUIUnreachable").await;
    assert!(
        message.contains(&format!(
            "http://open-webui.{namespace}.svc.cluster.local:8080"
        )),
        "{message}"
    );
    assert!(!message.contains("sk-admin-of-the-test"), "{message}");
}
