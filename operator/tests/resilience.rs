//! The operator converges back without anyone's help after the API server
//! restarts, after another field manager edits what it owns, after the Open
//! WebUI workload is recreated and after the API key Secret is deleted, all
//! against a real kube-apiserver and etcd.
//!
//! The operators here resync healthy gateways once an hour. A gateway that is
//! Ready is therefore not reconciled again within any deadline of these tests
//! unless a watch event asks for it: whatever converges while a gateway is
//! Ready was driven by a watch.
//!
//! Each case prints the time it took to converge (`figure: ...`; run with
//! `-- --nocapture` to see them).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_gateway_operator::controller::{self, Context, Settings};
use bedrock_gateway_operator::crd::BedrockGateway;
use bedrock_gateway_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::{ControlPlane, DedicatedControlPlane, eventually};

/// How long any single convergence may take on a loaded 2-CPU machine.
const DEADLINE: Duration = Duration::from_secs(90);
const RESYNC: Duration = Duration::from_secs(3600);
const IMAGE: &str = "registry.example/bedrock-gateway-proxy:test";
const HASH_ANNOTATION: &str = "bedrock-gateway.io/config-hash";

fn figure(case: &str, what: &str, since: Instant) {
    println!(
        "figure: {case}: {what} in {:.2} s",
        since.elapsed().as_secs_f64()
    );
}

/// The controller of one namespace, in this process.
struct InProcessOperator {
    metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl InProcessOperator {
    async fn start(plane: &ControlPlane, client: &Client, namespace: &str) -> Self {
        plane.install_crds().await;
        let metrics = Metrics::new().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ctx = Arc::new(Context::new(
            client.clone(),
            Settings {
                proxy_image: IMAGE.into(),
                resync: RESYNC,
                watch_namespace: Some(namespace.to_owned()),
            },
            metrics.clone(),
            Some("resilience".into()),
        ));
        let task = tokio::spawn(controller::run(ctx, async move {
            let _ = stopped.await;
        }));
        Self {
            metrics,
            task,
            _stop: stop,
        }
    }

    fn reconciliations(&self) -> u64 {
        self.metrics
            .reconciliations
            .with_label_values(&["BedrockGateway"])
            .get()
    }
}

/// The operator binary as a child process, with its log in a file.
struct OperatorProcess {
    child: Child,
    metrics_address: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path, namespace: &str) -> Self {
        let metrics_address = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bedrock-gateway-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("BEDROCK_GATEWAY_OPERATOR_LEADER_ELECTION")
            .args([
                format!("--watch-namespace={namespace}"),
                format!("--resync-seconds={}", RESYNC.as_secs()),
                format!("--listen={metrics_address}"),
                format!("--proxy-image={IMAGE}"),
                "--log-json=false".to_owned(),
            ])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics_address,
            log,
        }
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The sum of a metric's series on the operator's `/metrics`, or None
    /// while it does not answer.
    async fn metric(&self, name: &str) -> Option<f64> {
        let address = self.metrics_address;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || support::metric_sum(address, &name))
            .await
            .ok()?
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- operator log (last lines) ---\n{}", self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(name: &str, spec: Value) -> BedrockGateway {
    serde_json::from_value(json!({
        "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn open_webui(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "open-webui", "image": "ghcr.io/open-webui/open-webui:main",
                    "env": [
                        {"name": "OPENAI_API_BASE_URLS", "value": "https://api.openai.com/v1"},
                        {"name": "OPENAI_API_KEYS", "value": "sk-user"}
                    ]
                }]}
            }
        }
    }))
    .unwrap()
}

fn condition(gateway: &BedrockGateway, kind: &str) -> Option<(String, String, String)> {
    gateway
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == kind)
        .map(|condition| {
            (
                condition.status.clone(),
                condition.reason.clone(),
                condition.message.clone(),
            )
        })
}

fn has_condition(gateway: &BedrockGateway, kind: &str, status: &str, reason: &str) -> bool {
    condition(gateway, kind).is_some_and(|(s, r, _)| s == status && r == reason)
}

/// Stands in for the Deployment controller and kubelet, which do not run.
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

async fn wait_ready(gateways: &Api<BedrockGateway>, name: &str) -> BedrockGateway {
    eventually(DEADLINE, &format!("gateway {name} is Ready"), || async {
        let current = gateways.get(name).await.ok()?;
        has_condition(&current, "Ready", "True", "Ready").then_some(current)
    })
    .await
}

async fn get_some<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(DEADLINE, &format!("{name} exists"), || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

fn config_hash(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|meta| meta.annotations.as_ref())
        .and_then(|annotations| annotations.get(HASH_ANNOTATION).cloned())
        .unwrap_or_default()
}

fn proxy_container(deployment: &Deployment) -> k8s_openapi::api::core::v1::Container {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| {
            pod.containers
                .iter()
                .find(|container| container.name == "bedrock-gateway-proxy")
                .cloned()
        })
        .unwrap_or_default()
}

fn env_var(container: &k8s_openapi::api::core::v1::Container, name: &str) -> Option<EnvVar> {
    container
        .env
        .iter()
        .flatten()
        .find(|var| var.name == name)
        .cloned()
}

fn open_webui_container(deployment: &Deployment) -> k8s_openapi::api::core::v1::Container {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| {
            pod.containers
                .iter()
                .find(|container| container.name == "open-webui")
                .cloned()
        })
        .unwrap_or_default()
}

/// The Secret name and key the Open WebUI key variable reads, when wired.
fn wired_key_source(workload: &Deployment, key_var: &str, url: &str) -> Option<(String, String)> {
    let container = open_webui_container(workload);
    let urls = env_var(&container, "OPENAI_API_BASE_URLS")?.value?;
    let keys = env_var(&container, "OPENAI_API_KEYS")?.value?;
    if !urls.split(';').any(|entry| entry == url) || !keys.contains(&format!("$({key_var})")) {
        return None;
    }
    let selector = env_var(&container, key_var)?.value_from?.secret_key_ref?;
    Some((selector.name, selector.key))
}

/// Fields a field manager owns on an object, as the raw `fieldsV1` text of
/// its entries for `operation` ("Apply" or "Update").
fn owned_fields<K: kube::Resource>(object: &K, manager: &str, operation: &str) -> String {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager)
                && entry.operation.as_deref() == Some(operation)
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .map(|fields| fields.0.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Case 1: kube-apiserver dies while the operator works (a gateway was just
/// created) and comes back on the same port; etcd keeps its data. The
/// operator process keeps running through the outage, its watches resume,
/// and changes made while its watches were still down are reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_an_api_server_restart() {
    let plane = DedicatedControlPlane::start().await;
    plane.install_crds().await;
    let namespace = plane.fresh_namespace("restart").await;
    let client = plane.client().await;
    let mut operator = OperatorProcess::start(plane.kubeconfig_path(), &namespace);
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);

    gateways
        .create(
            &PostParams::default(),
            &gateway("steady", json!({"region": "us-east-1"})),
        )
        .await
        .unwrap();
    get_some(&deployments, "steady-bedrock-gateway").await;
    mark_available(&client, &namespace, "steady-bedrock-gateway").await;
    wait_ready(&gateways, "steady").await;

    // A new gateway sets the operator to work; the apiserver dies under it.
    gateways
        .create(
            &PostParams::default(),
            &gateway("during", json!({"region": "us-east-1"})),
        )
        .await
        .unwrap();
    plane.kill_apiserver().await;
    let down = Instant::now();
    let errors = eventually(
        DEADLINE,
        "the operator reports its failing watches",
        || async {
            operator
                .metric("bedrock_gateway_operator_watch_errors_total")
                .await
                .filter(|errors| *errors >= 1.0)
        },
    )
    .await;
    assert!(
        operator.exit_status().is_none(),
        "the operator exited while the apiserver was down:\n{}",
        operator.log_tail()
    );
    plane.start_apiserver().await;
    let back = Instant::now();
    println!(
        "figure: apiserver restart: down {:.2} s ({errors} watch errors reported by then)",
        (back - down).as_secs_f64()
    );

    // Changes made as soon as the apiserver is back, while the operator's
    // watches are still waiting out their backoff. The test's own pooled
    // connections died with the apiserver, so its requests are retried.
    eventually(DEADLINE, "the change to steady is accepted", || async {
        gateways
            .patch(
                "steady",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await
            .ok()
    })
    .await;
    eventually(DEADLINE, "the new gateway after is accepted", || async {
        match gateways
            .create(
                &PostParams::default(),
                &gateway("after", json!({"region": "us-east-1"})),
            )
            .await
        {
            Ok(_) => Some(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Some(()),
            Err(_) => None,
        }
    })
    .await;

    for name in ["during", "after"] {
        eventually(DEADLINE, &format!("{name} is reconciled"), || async {
            deployments
                .get_opt(&format!("{name}-bedrock-gateway"))
                .await
                .ok()??;
            let current = gateways.get(name).await.ok()?;
            condition(&current, "ProxyAvailable").map(|_| ())
        })
        .await;
    }
    figure(
        "apiserver restart",
        "gateway created mid-reconcile and gateway created after the restart reconciled",
        back,
    );
    eventually(DEADLINE, "the edit of steady is reconciled", || async {
        budgets.get_opt("steady-bedrock-gateway").await.ok()??;
        let current = gateways.get("steady").await.ok()?;
        (current.status.as_ref()?.observed_generation == current.metadata.generation).then_some(())
    })
    .await;
    figure(
        "apiserver restart",
        "edit made just after the restart reconciled",
        back,
    );
    wait_ready(&gateways, "steady").await;

    // The watches are live again: steady is Ready, so only a watch event can
    // bring its deleted Service back before the hourly resync.
    let service = services.get("steady-bedrock-gateway").await.unwrap();
    services
        .delete("steady-bedrock-gateway", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    eventually(DEADLINE, "the deleted Service is recreated", || async {
        let current = services.get_opt("steady-bedrock-gateway").await.ok()??;
        (current.uid() != service.uid()).then_some(())
    })
    .await;
    figure(
        "apiserver restart",
        "owned Service deleted after the restart recreated",
        deleted,
    );
    assert!(
        operator.exit_status().is_none(),
        "the operator exited:\n{}",
        operator.log_tail()
    );
    assert!(
        operator
            .metric("bedrock_gateway_operator_reconciliations_total")
            .await
            .is_some(),
        "the operator still serves its metrics"
    );
}

/// Case 2: another field manager (as `kubectl apply --server-side
/// --force-conflicts` or `kubectl edit` would) changes the proxy
/// Deployment's image, replicas and environment and the Service's port. The
/// operator applies with force and takes its fields back. The gateway is
/// Ready, so nothing but the watches on these objects can trigger that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_by_another_field_manager_are_taken_back() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("conflict").await;
    let operator = InProcessOperator::start(plane, &client, &namespace).await;
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(
            &PostParams::default(),
            &gateway("owned", json!({"region": "us-east-1"})),
        )
        .await
        .unwrap();
    let proxy = get_some(&deployments, "owned-bedrock-gateway").await;
    get_some(&services, "owned-bedrock-gateway").await;
    mark_available(&client, &namespace, "owned-bedrock-gateway").await;
    wait_ready(&gateways, "owned").await;
    let original_hash = config_hash(&proxy);

    let before = operator.reconciliations();
    deployments
        .patch(
            "owned-bedrock-gateway",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "owned-bedrock-gateway"},
                "spec": {
                    "replicas": 5,
                    "template": {"spec": {"containers": [{
                        "name": "bedrock-gateway-proxy",
                        "image": "registry.example/someone-elses-proxy:latest",
                        "env": [{"name": "AWS_REGION", "value": "eu-west-1"}]
                    }]}}
                }
            })),
        )
        .await
        .unwrap();
    let edited = Instant::now();
    let restored = eventually(
        DEADLINE,
        "the proxy Deployment is the operator's again",
        || async {
            let current = deployments.get("owned-bedrock-gateway").await.ok()?;
            let container = proxy_container(&current);
            let region = env_var(&container, "AWS_REGION")?.value?;
            (current.spec.as_ref()?.replicas == Some(1)
                && container.image.as_deref() == Some(IMAGE)
                && region == "us-east-1")
                .then_some(current)
        },
    )
    .await;
    figure(
        "field manager conflict",
        "Deployment image, replicas and env taken back",
        edited,
    );
    assert!(
        operator.reconciliations() > before,
        "a reconcile ran for the edit"
    );
    assert_eq!(
        config_hash(&restored),
        original_hash,
        "the pod template is the operator's again"
    );
    let theirs = owned_fields(&restored, "kubectl", "Apply");
    for field in ["f:replicas", "f:image", "f:value"] {
        assert!(
            !theirs.contains(field),
            "kubectl still owns {field}: {theirs}"
        );
    }
    let ours = owned_fields(&restored, "bedrock-gateway-operator", "Apply");
    for field in ["f:replicas", "f:image", "f:value"] {
        assert!(
            ours.contains(field),
            "the operator does not own {field}: {ours}"
        );
    }

    // `kubectl edit` of the Service: an update moving the HTTP port.
    let mut service = services.get("owned-bedrock-gateway").await.unwrap();
    let ports = service
        .spec
        .as_mut()
        .and_then(|spec| spec.ports.as_mut())
        .unwrap();
    ports[0].port = 8081;
    services
        .replace(
            "owned-bedrock-gateway",
            &PostParams {
                field_manager: Some("kubectl-edit".into()),
                ..PostParams::default()
            },
            &service,
        )
        .await
        .unwrap();
    let edited = Instant::now();
    let restored = eventually(
        DEADLINE,
        "the Service ports are the operator's again",
        || async {
            let current = services.get("owned-bedrock-gateway").await.ok()?;
            let ports: Vec<(Option<String>, i32)> = current
                .spec
                .as_ref()?
                .ports
                .iter()
                .flatten()
                .map(|port| (port.name.clone(), port.port))
                .collect();
            (ports == [(Some("http".into()), 80), (Some("metrics".into()), 9090)])
                .then_some(current)
        },
    )
    .await;
    figure("field manager conflict", "Service port taken back", edited);
    assert_eq!(
        restored.spec.as_ref().unwrap().cluster_ip,
        service.spec.as_ref().unwrap().cluster_ip,
        "the Service keeps its address"
    );
    assert!(!operator.task.is_finished());
}

/// Case 3: the Open WebUI workload is deleted, then created again from its
/// original manifest, without the wiring. While it is missing the gateway
/// says so; the new workload is wired as soon as it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_open_webui_workload_is_wired_again() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("rewire").await;
    let operator = InProcessOperator::start(plane, &client, &namespace).await;
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui"))
        .await
        .unwrap();
    gateways
        .create(
            &PostParams::default(),
            &gateway(
                "team",
                json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "open-webui"}}}),
            ),
        )
        .await
        .unwrap();
    get_some(&deployments, "team-bedrock-gateway").await;
    mark_available(&client, &namespace, "team-bedrock-gateway").await;
    wait_ready(&gateways, "team").await;
    let url = format!("http://team-bedrock-gateway.{namespace}.svc.cluster.local/v1");
    let key_var = "BEDROCK_GATEWAY_TEAM_API_KEY";
    let first = deployments.get("open-webui").await.unwrap();
    assert_eq!(
        wired_key_source(&first, key_var, &url),
        Some(("team-bedrock-gateway-api-key".into(), "api-key".into()))
    );

    deployments
        .delete("open-webui", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let missing = eventually(
        DEADLINE,
        "the gateway reports the missing workload",
        || async {
            let current = gateways.get("team").await.ok()?;
            has_condition(&current, "OpenWebUIWired", "False", "WorkloadNotFound")
                .then_some(current)
        },
    )
    .await;
    figure("workload recreated", "OpenWebUIWired False", deleted);
    let (_, reason, message) = condition(&missing, "Ready").unwrap();
    assert_eq!(reason, "WorkloadNotFound");
    assert!(
        message.contains("open-webui") && message.contains(&namespace),
        "{message}"
    );

    deployments
        .create(&PostParams::default(), &open_webui("open-webui"))
        .await
        .unwrap();
    let recreated = Instant::now();
    let rewired = eventually(DEADLINE, "the new workload is wired", || async {
        let workload = deployments.get("open-webui").await.ok()?;
        wired_key_source(&workload, key_var, &url).map(|source| (workload, source))
    })
    .await;
    figure("workload recreated", "new workload wired", recreated);
    assert_ne!(rewired.0.uid(), first.uid());
    assert_eq!(
        rewired.1,
        ("team-bedrock-gateway-api-key".into(), "api-key".into())
    );
    let container = open_webui_container(&rewired.0);
    assert_eq!(
        env_var(&container, "OPENAI_API_BASE_URLS").unwrap().value,
        Some(format!("https://api.openai.com/v1;{url}")),
        "the user's connection is kept"
    );
    assert!(
        rewired
            .0
            .annotations()
            .contains_key("bedrock-gateway.io/wiring.team")
    );
    let current = eventually(DEADLINE, "the gateway is wired and Ready again", || async {
        let current = gateways.get("team").await.ok()?;
        (has_condition(&current, "OpenWebUIWired", "True", "EnvWired")
            && has_condition(&current, "Ready", "True", "Ready"))
        .then_some(current)
    })
    .await;
    figure("workload recreated", "gateway Ready again", recreated);
    assert!(current.status.is_some());
    assert!(!operator.task.is_finished());
}

/// Case 4a: the generated key Secret is deleted. The key it held exists
/// nowhere else (the operator keeps no copy of keys), so the operator
/// generates a new one: deleting the Secret is how a generated key is
/// rotated. The proxy pods roll to the new key through the pod template's
/// config hash; Open WebUI's wiring reads the key from the Secret by name, so
/// it stays correct and Open WebUI gets the new key the next time its pods
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_generated_key_is_replaced_and_the_proxy_rolls() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("rotate").await;
    let operator = InProcessOperator::start(plane, &client, &namespace).await;
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &open_webui("open-webui"))
        .await
        .unwrap();
    gateways
        .create(
            &PostParams::default(),
            &gateway(
                "rot",
                json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "open-webui"}}}),
            ),
        )
        .await
        .unwrap();
    let proxy = get_some(&deployments, "rot-bedrock-gateway").await;
    mark_available(&client, &namespace, "rot-bedrock-gateway").await;
    wait_ready(&gateways, "rot").await;
    let first = secrets.get("rot-bedrock-gateway-api-key").await.unwrap();
    let first_hash = config_hash(&proxy);
    let url = format!("http://rot-bedrock-gateway.{namespace}.svc.cluster.local/v1");
    let key_var = "BEDROCK_GATEWAY_ROT_API_KEY";

    secrets
        .delete("rot-bedrock-gateway-api-key", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let second = eventually(DEADLINE, "a new key Secret exists", || async {
        let secret = secrets
            .get_opt("rot-bedrock-gateway-api-key")
            .await
            .ok()??;
        (secret.uid() != first.uid()).then_some(secret)
    })
    .await;
    figure(
        "key Secret deleted",
        "generated key Secret recreated",
        deleted,
    );
    let key = |secret: &Secret| secret.data.as_ref().unwrap()["api-key"].0.clone();
    assert_ne!(key(&second), key(&first), "a new key, not the old one");
    assert!(key(&second).len() >= 40);
    let owner = &second.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("BedrockGateway", "rot")
    );
    eventually(
        DEADLINE,
        "the proxy pod template rolls to the new key",
        || async {
            let current = deployments.get("rot-bedrock-gateway").await.ok()?;
            (config_hash(&current) != first_hash).then_some(())
        },
    )
    .await;
    figure("key Secret deleted", "proxy pod template rolled", deleted);
    let workload = deployments.get("open-webui").await.unwrap();
    assert_eq!(
        wired_key_source(&workload, key_var, &url),
        Some(("rot-bedrock-gateway-api-key".into(), "api-key".into())),
        "Open WebUI reads the key from the recreated Secret"
    );
    wait_ready(&gateways, "rot").await;
    assert!(!operator.task.is_finished());
}

/// Case 4b: the user's own key Secret (`apiKey.secretRef`) is deleted. The
/// operator never makes up a key for it: the gateway turns not Ready with
/// `SecretNotFound` naming the Secret, and recovers when the Secret is back;
/// a Secret without the named key is `SecretKeyMissing`. The gateway is Ready
/// when the Secret goes, so only the watch on the user's Secret can notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_key_secret_is_reported_and_recovered() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("userkey").await;
    let operator = InProcessOperator::start(plane, &client, &namespace).await;
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let user_secret = |value: &str, key: &str| -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "team-key"},
            "stringData": {key: value}
        }))
        .unwrap()
    };
    secrets
        .create(
            &PostParams::default(),
            &user_secret("sk-first-key", "token"),
        )
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &open_webui("open-webui"))
        .await
        .unwrap();
    gateways
        .create(
            &PostParams::default(),
            &gateway(
                "own",
                json!({
                    "region": "us-east-1",
                    "apiKey": {"secretRef": {"name": "team-key", "key": "token"}},
                    "openWebUI": {"workloadRef": {"name": "open-webui"}}
                }),
            ),
        )
        .await
        .unwrap();
    let proxy = get_some(&deployments, "own-bedrock-gateway").await;
    mark_available(&client, &namespace, "own-bedrock-gateway").await;
    wait_ready(&gateways, "own").await;
    let first_hash = config_hash(&proxy);

    secrets
        .delete("team-key", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let missing = eventually(DEADLINE, "the missing Secret is reported", || async {
        let current = gateways.get("own").await.ok()?;
        (has_condition(&current, "ProxyAvailable", "False", "SecretNotFound")
            && has_condition(&current, "Ready", "False", "SecretNotFound"))
        .then_some(current)
    })
    .await;
    figure(
        "user key Secret deleted",
        "SecretNotFound reported",
        deleted,
    );
    let (_, _, message) = condition(&missing, "ProxyAvailable").unwrap();
    assert!(message.contains("team-key"), "{message}");
    assert!(
        secrets.get_opt("team-key").await.unwrap().is_none(),
        "the operator never makes up a key for a Secret of the user's"
    );

    secrets
        .create(
            &PostParams::default(),
            &user_secret("sk-second-key", "token"),
        )
        .await
        .unwrap();
    let restored = Instant::now();
    wait_ready(&gateways, "own").await;
    figure(
        "user key Secret deleted",
        "Ready again once it is back",
        restored,
    );
    let rolled = eventually(DEADLINE, "the proxy rolls to the new key", || async {
        let current = deployments.get("own-bedrock-gateway").await.ok()?;
        (config_hash(&current) != first_hash).then_some(current)
    })
    .await;
    let volume = rolled
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.volumes.as_ref())
        .and_then(|volumes| volumes.first())
        .and_then(|volume| volume.secret.clone())
        .unwrap();
    assert_eq!(volume.secret_name.as_deref(), Some("team-key"));
    let url = format!("http://own-bedrock-gateway.{namespace}.svc.cluster.local/v1");
    assert_eq!(
        wired_key_source(
            &deployments.get("open-webui").await.unwrap(),
            "BEDROCK_GATEWAY_OWN_API_KEY",
            &url
        ),
        Some(("team-key".into(), "token".into()))
    );

    // The Secret loses the named key: reported, and recovered when it is back.
    secrets
        .replace("team-key", &PostParams::default(), &{
            let mut secret = secrets.get("team-key").await.unwrap();
            secret.data = None;
            secret.string_data = Some([("other".to_owned(), "x".to_owned())].into());
            secret
        })
        .await
        .unwrap();
    let emptied = Instant::now();
    eventually(DEADLINE, "the missing key is reported", || async {
        let current = gateways.get("own").await.ok()?;
        has_condition(&current, "ProxyAvailable", "False", "SecretKeyMissing").then_some(())
    })
    .await;
    figure(
        "user key Secret deleted",
        "SecretKeyMissing reported",
        emptied,
    );
    secrets
        .patch(
            "team-key",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "sk-third-key"}})),
        )
        .await
        .unwrap();
    let refilled = Instant::now();
    wait_ready(&gateways, "own").await;
    figure(
        "user key Secret deleted",
        "Ready again once the key is back",
        refilled,
    );
    assert!(!operator.task.is_finished());
}
