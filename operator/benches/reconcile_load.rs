//! Load benchmark: N BedrockGateways, each with its own Open WebUI
//! Deployment, against the local kube-apiserver; reports the time until all
//! are Ready and wired and the operator process's peak RSS.
//!
//! `cargo bench -p bedrock-gateway-operator --bench reconcile_load -- [gateways] [results-file]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bedrock_gateway_operator::crd::BedrockGateway;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::ControlPlane;

const CONCURRENT_CREATES: usize = 32;

fn open_webui(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "open-webui", "image": "ghcr.io/open-webui/open-webui:main",
                "env": [{"name": "OPENAI_API_BASE_URLS", "value": "https://api.openai.com/v1"},
                        {"name": "OPENAI_API_KEYS", "value": "sk-user"}]}]}}}
    }))
    .expect("a valid Deployment")
}

fn gateway(name: &str, workload: &str) -> BedrockGateway {
    serde_json::from_value(json!({
        "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway", "metadata": {"name": name},
        "spec": {"region": "us-east-1", "aws": {"roleArn": "arn:aws:iam::123456789012:role/bedrock"},
                 "openWebUI": {"workloadRef": {"name": workload}}}
    }))
    .expect("a valid BedrockGateway")
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// `apiserver_request_total` summed by verb and resource (with its
/// subresource), from the API server's own metrics.
async fn api_requests(client: &Client) -> BTreeMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client.request_text(request).await.unwrap_or_default();
    let mut tally = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|value| value.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *tally
            .entry(format!("{} {resource}", label("verb")))
            .or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    tally
}

fn is_ready_and_wired(gateway: &BedrockGateway) -> bool {
    let conditions = gateway
        .status
        .as_ref()
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    ["Ready", "OpenWebUIWired"].iter().all(|kind| {
        conditions
            .iter()
            .any(|condition| condition.type_ == *kind && condition.status == "True")
    })
}

/// No kubelet runs: proxy Deployments are marked available as they appear.
async fn play_kubelet(client: Client, namespace: String) {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let config =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=bedrock-gateway-operator");
    let stream = watcher(api.clone(), config).applied_objects();
    futures_util::pin_mut!(stream);
    while let Ok(Some(deployment)) = stream.try_next().await {
        if deployment
            .status
            .as_ref()
            .and_then(|status| status.available_replicas)
            .unwrap_or(0)
            > 0
        {
            continue;
        }
        let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
        let _ = api
            .patch_status(
                &deployment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await;
    }
}

/// Keeps `ready` holding the names of the gateways that are Ready and wired.
async fn follow_readiness(gateways: Api<BedrockGateway>, ready: Arc<Mutex<HashSet<String>>>) {
    let stream = watcher(gateways, watcher::Config::default()).applied_objects();
    futures_util::pin_mut!(stream);
    while let Ok(Some(gateway)) = stream.try_next().await {
        if let Ok(mut names) = ready.lock() {
            if is_ready_and_wired(&gateway) {
                names.insert(gateway.name_any());
            } else {
                names.remove(&gateway.name_any());
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let count: usize = args
        .first()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let results_file = args.get(1).cloned();

    let plane = ControlPlane::shared();
    plane.install_crds().await;
    let client = plane.client().await;
    let namespace = plane.fresh_namespace("load").await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let metrics_address = listener.local_addr().expect("an address");
    drop(listener);
    let mut operator = std::process::Command::new(env!("CARGO_BIN_EXE_bedrock-gateway-operator"))
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .args([
            "--watch-namespace",
            &namespace,
            "--listen",
            &metrics_address.to_string(),
        ])
        .spawn()
        .expect("the operator starts");
    let pid = operator.id();

    let requests_before = api_requests(&client).await;
    tokio::spawn(play_kubelet(client.clone(), namespace.clone()));
    let started = Instant::now();
    let workloads: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let gateways: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
    futures_util::stream::iter(0..count)
        .for_each_concurrent(CONCURRENT_CREATES, |index| {
            let workloads = workloads.clone();
            let gateways = gateways.clone();
            async move {
                let workload = format!("open-webui-{index}");
                workloads
                    .create(&PostParams::default(), &open_webui(&workload))
                    .await
                    .expect("workload created");
                gateways
                    .create(
                        &PostParams::default(),
                        &gateway(&format!("gateway-{index}"), &workload),
                    )
                    .await
                    .expect("gateway created");
            }
        })
        .await;
    let created_after = started.elapsed();

    // Readiness is followed through a watch: polling LISTs of every gateway
    // would load the API server the operator is measured against.
    let ready_names = Arc::new(Mutex::new(HashSet::new()));
    tokio::spawn(follow_readiness(gateways.clone(), ready_names.clone()));
    let ready = loop {
        let ready = ready_names.lock().map_or(0, |names| names.len());
        if ready == count || started.elapsed() > Duration::from_secs(600) {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let peak_kib = rss_kib(pid, "VmHWM:");
    let reconciles = support::metric_sum(
        metrics_address,
        "bedrock_gateway_operator_reconciliations_total",
    )
    .unwrap_or(0.0);
    let _ = operator.kill();
    let _ = operator.wait();
    let mut requests: Vec<(String, f64)> = api_requests(&client)
        .await
        .into_iter()
        .map(|(call, total)| {
            let before = requests_before.get(&call).copied().unwrap_or(0.0);
            (call, total - before)
        })
        .filter(|(call, made)| *made >= count as f64 / 10.0 && !call.starts_with("WATCH"))
        .collect();
    requests.sort_by(|a, b| b.1.total_cmp(&a.1));
    let request_total: f64 = requests.iter().map(|(_, made)| made).sum();
    let request_rows: String = requests
        .iter()
        .map(|(call, made)| format!("| {call} | {made} | {:.2} |\n", made / count as f64))
        .collect();

    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let report = format!(
        "# Operator load benchmark\n\n\
         Written by `make bench-operator` (`scripts/bench-operator.sh`).\n\n\
         | Measure | Value | Target |\n|---|---|---|\n\
         | BedrockGateways (each with its own Open WebUI Deployment) | {count} | |\n\
         | Created (workloads and gateways, {CONCURRENT_CREATES} at a time) after | {:.1} s | |\n\
         | All Ready and wired after | {:.1} s ({ready}/{count}) | < 60 s: {} |\n\
         | Operator peak RSS (VmHWM) | {:.1} MiB | < 100 MiB: {} |\n\
         | Reconciles | {reconciles} ({:.1} per gateway) | |\n\n\
         Local kube-apiserver and etcd (built from their Go modules), the operator's release build, \
         and this load generator all share the machine's {} CPUs.\n\n\
         API server requests during the run (the operator's and the load generator's; \
         calls made fewer than {} times left out):\n\n\
         | Request | Made | Per gateway |\n|---|---|---|\n{request_rows}\
         | All of the above | {request_total} | {:.2} |\n",
        created_after.as_secs_f64(),
        elapsed.as_secs_f64(),
        verdict(ready == count && elapsed < Duration::from_secs(60)),
        peak_kib as f64 / 1024.0,
        verdict(peak_kib < 100 * 1024),
        reconciles / count as f64,
        std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
        count / 10,
        request_total / count as f64,
    );
    print!("{report}");
    if let Some(path) = results_file {
        std::fs::write(&path, &report).expect("results written");
    }
}
